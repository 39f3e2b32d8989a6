"""The simulated annotator: how many clicks a user needs per object, and which proposals they accept.

The rules (issue 15, the interactive-segmentation literature's NoC@90):

* A proposal (an object of the automatic label image) whose IoU with a true
  object is >= 0.9 is accepted: that object costs no click.
* Every other object is clicked, one click at a time, at the centre of the
  largest error region: the pixel farthest from the edge (distance-transform
  maximum) of the missed part (a positive click) or of the wrongly taken part
  (a negative click), whichever region is deeper. The first click, with
  nothing drawn yet, lands at the object's centre. As in Segment Anything,
  the first click asks for three candidates and keeps the one the model rates
  best; later clicks feed that answer's low-resolution logits back as the
  mask prompt and ask for one mask.
* Clicking stops at IoU >= 0.9 or after 20 clicks; the number of clicks is the
  object's NoC@90 (20 when 0.9 is never reached). The IoU after the first
  click is the one-click IoU.

Every object is clicked, accepted or not, so that the one-click IoU describes
the model on all objects; an accepted object's NoC is 0. Coordinates are
(x, y) pixels of the image, as :class:`napari_sam.model.SamPredictor` takes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..auto.metrics import iou_matrix
from ..geometry import mask_iou

IOU_GOAL = 0.9
MAX_CLICKS = 20


@dataclass
class ObjectResult:
    """One true object under the simulated annotator."""

    label: int
    ious: list[float] = field(default_factory=list)  # IoU after each click
    mask: np.ndarray | None = None  # the last mask drawn
    accepted: bool = False  # a proposal had IoU >= the goal

    @property
    def reached(self) -> bool:
        return bool(self.ious) and self.ious[-1] >= IOU_GOAL

    def clicks(self, max_clicks: int = MAX_CLICKS) -> int:
        """Clicks to reach the goal by clicking (``max_clicks`` when never reached)."""
        return len(self.ious) if self.reached else max_clicks

    def noc(self, max_clicks: int = MAX_CLICKS) -> int:
        """This object's share of the annotator's work: 0 when accepted, else its clicks."""
        return 0 if self.accepted else self.clicks(max_clicks)


def next_click(predicted: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, int] | None:
    """((x, y), label) at the centre of the largest error region, or None when there is no error.

    Label 1 (positive) in a missed part of ``target``, 0 (negative) in a part
    ``predicted`` took wrongly. The image edge counts as an edge of a region.
    """
    predicted, target = np.asarray(predicted, bool), np.asarray(target, bool)
    if predicted.shape != target.shape or predicted.ndim != 2:
        raise ValueError(f"predicted {predicted.shape} and target {target.shape} must be 2D masks of one shape")
    best = None
    for region, label in ((target & ~predicted, 1), (predicted & ~target, 0)):
        if not region.any():
            continue
        depth = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        # Ties go to the missed part: a user first adds what is missing.
        if best is None or depth[y, x] > best[0]:
            best = (depth[y, x], np.array([x, y], np.float64), label)
    return None if best is None else (best[1], best[2])


def click_object(predictor, target: np.ndarray, label: int = 1, max_clicks: int = MAX_CLICKS,
                 goal: float = IOU_GOAL) -> ObjectResult:
    """Click one object on the predictor's current image until IoU >= ``goal`` or ``max_clicks``."""
    return click_objects(predictor, [target], [label], max_clicks, goal)[0]


def click_objects(predictor, targets, labels, max_clicks: int = MAX_CLICKS, goal: float = IOU_GOAL) -> list[ObjectResult]:
    """Click several objects of the predictor's current image, each as :func:`click_object` would.

    Every object still short of the goal gets its next click in the same
    round, so all of them hold the same number of points and are decoded
    together (``predictor.predict_objects``): a few decoder calls per round
    instead of one per object.
    """
    targets = [np.asarray(t, bool) for t in targets]
    for t, label in zip(targets, labels):
        if not t.any():
            raise ValueError(f"object {label} is empty: there is nothing to click")
    results = [ObjectResult(int(label)) for label in labels]
    shown = [np.zeros_like(t) for t in targets]
    points = [[] for _ in targets]
    logits = [None] * len(targets)
    active = list(range(len(targets)))
    for click in range(max_clicks):
        # 1. Each open object's next click, at the centre of its largest error.
        still = []
        for i in active:
            found = next_click(shown[i], targets[i])
            if found is not None:  # None: nothing wrong left (IoU 1)
                points[i].append(found)
                still.append(i)
        active = still
        if not active:
            break
        # 2. All of them decoded at once: three candidates after the first click, then the previous answer fed back.
        first = click == 0
        masks, scores, low_res = predictor.predict_objects(
            np.array([[p for p, _ in points[i]] for i in active], np.float64),
            np.array([[lab for _, lab in points[i]] for i in active], np.int64),
            mask_input=None if first else np.stack([logits[i] for i in active]), multimask_output=first)
        # 3. What the user sees, and whether it is good enough.
        for j, i in enumerate(active):
            best = int(np.argmax(scores[j])) if first else 0
            shown[i], logits[i] = np.asarray(masks[j, best], bool), low_res[j, best][None]
            results[i].ious.append(mask_iou(shown[i], targets[i]))
        active = [i for i in active if results[i].ious[-1] < goal]
    for r, mask in zip(results, shown):
        r.mask = mask
    return results


def accepted_objects(truth: np.ndarray, proposals: np.ndarray, goal: float = IOU_GOAL) -> set[int]:
    """Ids of the true objects that some proposal (an object of the label image ``proposals``) matches with IoU >= goal."""
    ids = np.unique(truth)
    ids = ids[ids > 0]
    if not len(ids) or not np.any(proposals):
        return set()
    iou = iou_matrix(truth, proposals)  # rows: true objects in increasing id order
    return {int(i) for i, row in zip(ids, iou) if row.max() >= goal}


def annotate_image(predictor, truth: np.ndarray, proposals: np.ndarray | None = None,
                   max_clicks: int = MAX_CLICKS, click_accepted: bool = True) -> list[ObjectResult]:
    """Every true object of ``truth`` on the predictor's current image: accepted or clicked (see the module).

    ``click_accepted=False`` leaves accepted objects unclicked (no one-click
    IoU for them), as a labelling session would: only scoring needs them clicked.
    """
    truth = np.asarray(truth)
    accepted = accepted_objects(truth, proposals) if proposals is not None else set()
    ids = [int(i) for i in np.unique(truth) if i != 0]
    clicked = [i for i in ids if click_accepted or i not in accepted]
    by_id = {r.label: r for r in click_objects(predictor, [truth == i for i in clicked], clicked, max_clicks)}
    results = [by_id.get(i, ObjectResult(i)) for i in ids]
    for r in results:
        r.accepted = r.label in accepted
    return results


def annotated_labels(truth: np.ndarray, proposals: np.ndarray | None, results: list[ObjectResult]) -> np.ndarray:
    """The label image the simulated annotator leaves behind: what becomes training data.

    An accepted object keeps its proposal's mask (the best-matching one); a
    clicked object that reached the goal keeps the mask it was clicked to;
    one that never did is painted by hand (its true mask). Where masks
    overlap, the object placed first keeps the pixel.
    """
    out = np.zeros(np.shape(truth), np.uint32)
    for k, r in enumerate(results, start=1):
        target = truth == r.label
        if r.accepted and proposals is not None:
            ids = np.unique(proposals[target])
            candidates = [(mask_iou(proposals == i, target), i) for i in ids[ids > 0]]
            mask = proposals == max(candidates)[1]
        elif r.reached:
            mask = r.mask
        else:
            mask = target
        out[mask & (out == 0)] = k
    return out
