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
    target = np.asarray(target, bool)
    if not target.any():
        raise ValueError(f"object {label} is empty: there is nothing to click")
    result = ObjectResult(label)
    points, labels = [], []
    shown = np.zeros_like(target)
    logits = None
    while len(result.ious) < max_clicks:
        click = next_click(shown, target)
        if click is None:  # nothing wrong left (IoU 1): the goal was reached before
            break
        points.append(click[0])
        labels.append(click[1])
        first = logits is None
        masks, scores, low_res = predictor.predict(
            point_coords=np.array(points), point_labels=np.array(labels),
            mask_input=None if first else logits, multimask_output=first)
        best = int(np.argmax(scores)) if first else 0
        shown, logits = np.asarray(masks[best], bool), low_res[best][None]
        result.ious.append(mask_iou(shown, target))
        if result.ious[-1] >= goal:
            break
    result.mask = shown
    return result


def accepted_objects(truth: np.ndarray, proposals: np.ndarray, goal: float = IOU_GOAL) -> set[int]:
    """Ids of the true objects that some proposal (an object of the label image ``proposals``) matches with IoU >= goal."""
    ids = np.unique(truth)
    ids = ids[ids > 0]
    if not len(ids) or not np.any(proposals):
        return set()
    iou = iou_matrix(truth, proposals)  # rows: true objects in increasing id order
    return {int(i) for i, row in zip(ids, iou) if row.max() >= goal}


def annotate_image(predictor, truth: np.ndarray, proposals: np.ndarray | None = None,
                   max_clicks: int = MAX_CLICKS) -> list[ObjectResult]:
    """Every true object of ``truth`` on the predictor's current image: accepted or clicked (see the module)."""
    truth = np.asarray(truth)
    accepted = accepted_objects(truth, proposals) if proposals is not None else set()
    results = []
    for label in np.unique(truth):
        if label == 0:
            continue
        r = click_object(predictor, truth == label, int(label), max_clicks)
        r.accepted = int(label) in accepted
        results.append(r)
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
