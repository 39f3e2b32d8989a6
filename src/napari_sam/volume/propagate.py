"""Following one object from slice to slice through a stack.

The user segments an object on one or more slices (the *annotated* slices).
From each annotated slice we walk to the neighbouring slices, one at a
time: the next slice is prompted with what we know from the slice before —
the box around its mask (slightly enlarged, as the object may grow), a
positive point at the mask's most interior pixel (the maximum of its
distance transform, which lies inside the object even when it is curved)
and, optionally, the model's low-resolution mask logits. A walk stops

* when the mask vanishes (fewer than ``min_area`` pixels): the object ended;
* when the overlap (IoU) between the new mask and the previous slice's mask
  falls under ``iou_threshold``: the model jumped to something else, or the
  object changes too fast between slices to be followed safely;
* at the end of the stack (or ``max_distance`` slices from its annotation);
* optionally (``max_regrowth``), when the mask, after shrinking on its way
  from the annotation, grows again by more than that fraction above the
  smallest area seen: for convex objects such as nuclei this means the walk
  slid into the next object stacked along z, which a consecutive-slice IoU
  cannot see (the hand-over is gradual). Off by default, as cells with
  branches or waists legitimately grow again.

Below the lowest and above the highest annotated slice there is one walk
each. Between two annotated slices we fill from both ends and *meet in the
middle*: each slice is segmented from the nearer annotation (the one
before, on a tie), because errors grow with every step. If one walk stops
early, the walk from the other end goes on past the middle until it reaches
the slice where the first one stopped (or stops too), so one bad slice near
one annotation does not leave a hole that the other annotation could fill.
Annotated slices keep the user's mask unchanged.

The model is reached through a small protocol, :class:`SliceSegmenter`
(``segment(slice_index, prompt) -> SliceSegmentation``), so the walking and
stopping logic can be tested with an oracle that answers with the true
object; :class:`SamSliceSegmenter` answers with SAM, using the stack's
cached embeddings and computing missing ones on the way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from ..geometry import interior_point, mask_box, mask_iou

PROMPT_PARTS = ("box", "point", "mask")
DEFAULT_PROMPT = ("box", "point")
DEFAULT_IOU_THRESHOLD = 0.25

ProgressCallback = Callable[[int, int], None]
CancelCheck = Callable[[], bool]


# ----------------------------------------------------------------------------- protocol
@dataclass(frozen=True)
class SlicePrompt:
    """What the next slice is asked with, all derived from the previous slice's mask."""

    previous_mask: np.ndarray  # (H, W) bool, the mask the prompt comes from
    box: np.ndarray | None = None  # (4,) x0, y0, x1, y1 in pixels
    points: np.ndarray | None = None  # (N, 2) as (x, y)
    point_labels: np.ndarray | None = None  # (N,) 1 = object
    mask_input: np.ndarray | None = None  # (1, h, w) low-res logits of the previous slice


@dataclass(frozen=True)
class SliceSegmentation:
    mask: np.ndarray  # (H, W) bool
    low_res: np.ndarray | None = None  # (1, h, w) logits, usable as the next mask_input
    score: float = float("nan")  # the model's own quality estimate, if it has one


@runtime_checkable
class SliceSegmenter(Protocol):
    def segment(self, index: int, prompt: SlicePrompt) -> SliceSegmentation: ...


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class SliceOutcome:
    index: int
    status: str  # "annotated" or "propagated"
    area: int  # pixels in the mask
    annotation: int  # the annotated slice this walk started from
    prompted_from: int | None = None  # the slice whose mask gave the prompt
    score: float = float("nan")
    iou_with_previous: float = float("nan")


@dataclass(frozen=True)
class Stop:
    """Where and why one walk ended."""

    annotation: int  # the annotated slice the walk started from
    direction: int  # +1 towards higher slice indices, -1 towards lower ones
    last_slice: int  # the last slice the walk accepted (or the annotation)
    reason: str  # "vanished", "iou_below_threshold", "regrowth", "stack_end", "max_distance", "met_other_walk", "cancelled"
    rejected_slice: int | None = None  # the slice whose mask was refused, if any
    area: int | None = None  # of the refused mask
    iou: float | None = None  # of the refused mask with the previous one

    def describe(self) -> str:
        towards = "up" if self.direction > 0 else "down"
        text = f"walk from slice {self.annotation} {towards} ended after slice {self.last_slice}: "
        if self.reason == "vanished":
            return text + f"the mask vanished on slice {self.rejected_slice} ({self.area} pixels)"
        if self.reason == "iou_below_threshold":
            return text + f"slice {self.rejected_slice} overlaps the previous one too little (IoU {self.iou:.2f})"
        if self.reason == "regrowth":
            return text + f"the mask grew again on slice {self.rejected_slice} ({self.area} pixels): another object?"
        return text + self.reason.replace("_", " ")


@dataclass
class PropagationResult:
    mask: np.ndarray  # (Z, H, W) bool: the object in 3D
    slices: dict[int, SliceOutcome] = field(default_factory=dict)  # every slice in the object
    stops: list[Stop] = field(default_factory=list)
    cancelled: bool = False

    @property
    def z_extent(self) -> tuple[int, int] | None:
        """First and last slice holding the object."""
        if not self.slices:
            return None
        return min(self.slices), max(self.slices)

    @property
    def propagated_slices(self) -> list[int]:
        return sorted(i for i, s in self.slices.items() if s.status == "propagated")

    def summary(self) -> str:
        lines = [f"object on {len(self.slices)} slices ({len(self.propagated_slices)} propagated)"]
        lines += [stop.describe() for stop in self.stops]
        if self.cancelled:
            lines.append("cancelled")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- prompts
def prompt_from_mask(
    mask: np.ndarray, low_res: np.ndarray | None = None, use: Iterable[str] = DEFAULT_PROMPT, box_margin: float = 0.1
) -> SlicePrompt:
    """The prompt for the next slice from this slice's mask (and low-res logits, if ``"mask"`` is used)."""
    use = set(use)
    box = mask_box(mask, box_margin) if "box" in use else None
    points = labels = None
    if "point" in use:
        points = np.array([interior_point(mask)], dtype=np.float64)
        labels = np.ones(1, dtype=np.int64)
    mask_input = low_res if "mask" in use and low_res is not None else None
    return SlicePrompt(previous_mask=mask, box=box, points=points, point_labels=labels, mask_input=mask_input)


# ----------------------------------------------------------------------------- walking
class _Walk:
    """One walk from an annotated slice in one direction; it can be resumed past a meeting point."""

    def __init__(self, annotation: int, direction: int, mask: np.ndarray, low_res):
        self.annotation = annotation
        self.direction = direction
        self.index = annotation
        self.mask = mask
        self.low_res = low_res
        self.smallest_area = int(np.count_nonzero(mask))
        self.stop: Stop | None = None

    def end(self, reason: str, **details) -> None:
        self.stop = Stop(self.annotation, self.direction, self.index, reason, **details)


class _Propagation:
    def __init__(self, segmenter, n_slices, settings, progress, should_cancel, result, total):
        self.segmenter = segmenter
        self.n_slices = n_slices
        self.s = settings
        self.progress = progress
        self.should_cancel = should_cancel
        self.result = result
        self.total = total
        self.done = 0

    def run(self, walk: _Walk, last: int) -> None:
        """Advance ``walk`` slice by slice up to and including ``last`` (or until it stops)."""
        while walk.stop is None and walk.index != last:
            if self.should_cancel is not None and self.should_cancel():
                self.result.cancelled = True
                walk.end("cancelled")
                return
            if self.s["max_distance"] is not None and abs(walk.index - walk.annotation) >= self.s["max_distance"]:
                walk.end("max_distance")
                return
            z = walk.index + walk.direction
            prompt = prompt_from_mask(walk.mask, walk.low_res, self.s["prompt"], self.s["box_margin"])
            seg = self.segmenter.segment(z, prompt)
            mask = _check_answer(seg, walk.mask.shape, z)
            self.done += 1
            if self.progress is not None:
                self.progress(min(self.done, self.total), self.total)
            area = int(np.count_nonzero(mask))
            if area < self.s["min_area"]:
                walk.end("vanished", rejected_slice=z, area=area)
                return
            iou = mask_iou(walk.mask, mask)
            if iou < self.s["iou_threshold"]:
                walk.end("iou_below_threshold", rejected_slice=z, area=area, iou=iou)
                return
            regrowth = self.s["max_regrowth"]
            if regrowth is not None and area > (1.0 + regrowth) * walk.smallest_area:
                walk.end("regrowth", rejected_slice=z, area=area, iou=iou)
                return
            walk.smallest_area = min(walk.smallest_area, area)
            self.result.mask[z] = mask
            self.result.slices[z] = SliceOutcome(
                z, "propagated", area, walk.annotation, walk.index, float(seg.score), iou
            )
            walk.index, walk.mask = z, mask
            walk.low_res = None if seg.low_res is None else np.asarray(seg.low_res)

    def finish(self, walk: _Walk, reason: str) -> None:
        if walk.stop is None:
            walk.end(reason)
        self.result.stops.append(walk.stop)


def _check_answer(seg, shape, z) -> np.ndarray:
    if not isinstance(seg, SliceSegmentation):
        raise TypeError(f"the segmenter must return a SliceSegmentation, got {type(seg).__name__}")
    mask = np.asarray(seg.mask)
    if mask.shape != shape:
        raise ValueError(f"the segmenter returned a mask of shape {mask.shape} for slice {z}, expected {shape}")
    return mask.astype(bool, copy=False)


def propagate(
    segmenter: SliceSegmenter,
    annotations: Mapping[int, np.ndarray],
    n_slices: int | None = None,
    *,
    iou_threshold: float = DEFAULT_IOU_THRESHOLD,
    min_area: int = 1,
    prompt: Iterable[str] = DEFAULT_PROMPT,
    box_margin: float = 0.1,
    annotation_logits: Mapping[int, np.ndarray] | None = None,
    max_distance: int | None = None,
    max_regrowth: float | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> PropagationResult:
    """Segment the object given on the annotated slices through its neighbouring slices.

    Parameters
    ----------
    segmenter : answers a prompt on a slice (:class:`SamSliceSegmenter`, or an oracle in tests).
    annotations : {slice index: (H, W) mask} of the slices the user segmented.
    n_slices : slices in the stack; taken from ``len(segmenter)`` when not given.
    iou_threshold : a new mask whose IoU with the previous slice's mask is lower ends the walk (0 to 1).
    min_area : a mask with fewer pixels counts as vanished.
    prompt : which of "box", "point", "mask" prompt the next slice.
    box_margin : the box grows by this fraction of its size on each side.
    annotation_logits : {slice index: (1, h, w) low-res logits} of annotated slices segmented
        with the model, used as the first mask prompt when ``"mask"`` is in ``prompt``.
    max_distance : walk at most this many slices away from an annotation.
    max_regrowth : stop when the area exceeds the smallest area seen on the walk by more than this
        fraction (e.g. 0.25); None (default) never stops for this.
    progress : ``progress(done, total)`` after each slice; total is the most slices there could be.
    should_cancel : asked before each slice; when it returns True the result so far is returned
        with ``cancelled=True``.
    """
    if not hasattr(segmenter, "segment"):
        raise TypeError(f"segmenter must have a segment(index, prompt) method, got {type(segmenter).__name__}")
    if n_slices is None:
        if not hasattr(segmenter, "__len__"):
            raise ValueError("give n_slices: the segmenter does not know how many slices the stack has")
        n_slices = len(segmenter)
    if isinstance(n_slices, bool) or not isinstance(n_slices, (int, np.integer)) or n_slices < 1:
        raise ValueError(f"n_slices must be a positive integer, got {n_slices!r}")
    n_slices = int(n_slices)
    anns = _check_annotations(annotations, n_slices)
    settings = _check_settings(iou_threshold, min_area, prompt, box_margin, max_distance, max_regrowth)
    logits = {} if annotation_logits is None else {int(k): np.asarray(v) for k, v in annotation_logits.items()}

    shape = next(iter(anns.values())).shape
    result = PropagationResult(mask=np.zeros((n_slices, *shape), dtype=bool))
    for z, m in anns.items():
        result.mask[z] = m
        result.slices[z] = SliceOutcome(z, "annotated", int(np.count_nonzero(m)), z)
    total = n_slices - len(anns)
    job = _Propagation(segmenter, n_slices, settings, progress, should_cancel, result, total)
    if progress is not None:
        progress(0, total)

    order = sorted(anns)
    walk = lambda z, d: _Walk(z, d, anns[z], logits.get(z))  # noqa: E731
    # Below the lowest annotation.
    down = walk(order[0], -1)
    job.run(down, 0)
    job.finish(down, "stack_end")
    # Between each pair of annotations: meet in the middle, then let one walk go on where the other stopped.
    for lo, hi in zip(order[:-1], order[1:]):
        if hi - lo < 2:
            continue
        middle = (lo + hi) // 2
        up, back = walk(lo, +1), walk(hi, -1)
        job.run(up, middle)
        job.run(back, middle + 1)
        if up.stop is not None and back.stop is None and not result.cancelled:
            job.run(back, up.index + 1)  # down to the first slice the upward walk could not take
        elif back.stop is not None and up.stop is None and not result.cancelled:
            job.run(up, back.index - 1)
        job.finish(up, "met_other_walk")
        job.finish(back, "met_other_walk")
    # Above the highest annotation.
    up = walk(order[-1], +1)
    job.run(up, n_slices - 1)
    job.finish(up, "stack_end")
    if progress is not None:
        progress(total, total)
    return result


def _check_annotations(annotations, n_slices) -> dict[int, np.ndarray]:
    if not isinstance(annotations, Mapping):
        raise TypeError(
            f"annotations must map slice index -> 2D mask, got {type(annotations).__name__}; "
            "use annotations_from_labels() for a label volume"
        )
    anns, shape = {}, None
    for z, m in annotations.items():
        if isinstance(z, bool) or not isinstance(z, (int, np.integer)):
            raise TypeError(f"annotation slice index must be an integer, got {z!r}")
        if not 0 <= z < n_slices:
            raise ValueError(f"annotated slice {z} does not exist: the stack has {n_slices} slices")
        m = np.asarray(m)
        if m.ndim != 2:
            raise ValueError(f"the annotation on slice {z} must be a 2D mask, got shape {m.shape}")
        if shape is not None and m.shape != shape:
            raise ValueError(f"annotation masks differ in shape: {shape} and {m.shape} (slice {z})")
        shape = m.shape
        m = m.astype(bool)
        if m.any():
            anns[int(z)] = m
    if not anns:
        raise ValueError(
            "no object to propagate: segment or paint the object on at least one slice first"
        )
    return anns


def _check_settings(iou_threshold, min_area, prompt, box_margin, max_distance, max_regrowth=None) -> dict:
    try:
        iou_threshold = float(iou_threshold)
    except (TypeError, ValueError):
        raise TypeError(f"iou_threshold must be a number between 0 and 1, got {iou_threshold!r}") from None
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be between 0 and 1, got {iou_threshold}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ValueError(f"min_area must be a whole number of pixels >= 1, got {min_area!r}")
    if isinstance(prompt, str):
        prompt = (prompt,)
    prompt = tuple(prompt)
    unknown = [p for p in prompt if p not in PROMPT_PARTS]
    if unknown or not prompt:
        raise ValueError(f"prompt must be some of {PROMPT_PARTS}, got {prompt!r}")
    if prompt == ("mask",):
        raise ValueError("a mask prompt alone cannot start from a painted annotation; add 'box' or 'point'")
    try:
        box_margin = float(box_margin)
    except (TypeError, ValueError):
        raise TypeError(f"box_margin must be a number, got {box_margin!r}") from None
    if not 0.0 <= box_margin <= 1.0:
        raise ValueError(f"box_margin must be between 0 and 1 (a fraction of the box size), got {box_margin}")
    if max_distance is not None and (
        isinstance(max_distance, bool) or not isinstance(max_distance, (int, np.integer)) or max_distance < 1
    ):
        raise ValueError(f"max_distance must be a positive number of slices or None, got {max_distance!r}")
    if max_regrowth is not None:
        try:
            max_regrowth = float(max_regrowth)
        except (TypeError, ValueError):
            raise TypeError(f"max_regrowth must be a number or None, got {max_regrowth!r}") from None
        if not (np.isfinite(max_regrowth) and max_regrowth >= 0):
            raise ValueError(f"max_regrowth must be a fraction >= 0 (e.g. 0.25) or None, got {max_regrowth}")
    return {
        "max_regrowth": max_regrowth,
        "iou_threshold": iou_threshold,
        "min_area": int(min_area),
        "prompt": prompt,
        "box_margin": box_margin,
        "max_distance": max_distance,
    }


def annotations_from_labels(labels, label: int, slices: Iterable[int] | None = None) -> dict[int, np.ndarray]:
    """{slice: mask} of ``label`` in a (Z, H, W) label volume, on ``slices`` (default: every slice holding it)."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"expected a (slices, rows, columns) label volume, got shape {labels.shape}")
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label == 0:
        raise ValueError(f"label must be a non-zero integer (0 is background), got {label!r}")
    if slices is None:
        slices = np.flatnonzero((labels == label).any(axis=(1, 2)))
    anns = {int(z): labels[int(z)] == label for z in slices}
    if not any(m.any() for m in anns.values()):
        raise ValueError(f"label {label} is not on any of the given slices: nothing to propagate")
    return anns


# ----------------------------------------------------------------------------- SAM
class SamSliceSegmenter:
    """Answers slice prompts with SAM, using a :class:`~napari_sam.volume.StackEmbeddings`.

    Embeddings come from memory or the disk cache, or are computed (and saved)
    when a walk first reaches a slice. ``pick="single"`` asks SAM for one mask;
    ``pick="agreement"`` asks for its three candidates and keeps the one that
    overlaps the previous slice's mask most.
    """

    def __init__(self, embeddings, pick: str = "single"):
        if not hasattr(embeddings, "get") or not hasattr(embeddings, "predictor"):
            raise TypeError(f"expected a StackEmbeddings, got {type(embeddings).__name__}")
        if pick not in ("single", "agreement"):
            raise ValueError(f"pick must be 'single' or 'agreement', got {pick!r}")
        self.embeddings = embeddings
        self.predictor = embeddings.predictor
        self.pick = pick

    def __len__(self) -> int:
        return len(self.embeddings)

    def segment(self, index: int, prompt: SlicePrompt) -> SliceSegmentation:
        from .embed_stack import keep_current_image

        embedding = self.embeddings.get(index)
        multimask = self.pick == "agreement"
        with keep_current_image(self.predictor):
            self.predictor.set_embedding(embedding)
            masks, scores, low_res = self.predictor.predict(
                point_coords=prompt.points,
                point_labels=prompt.point_labels,
                box=prompt.box,
                mask_input=prompt.mask_input,
                multimask_output=multimask,
            )
        best = 0
        if multimask:
            best = int(np.argmax([mask_iou(m, prompt.previous_mask) for m in masks]))
        return SliceSegmentation(masks[best], low_res[best : best + 1], float(scores[best]))


def propagate_with_sam(
    predictor,
    stack,
    annotations: Mapping[int, np.ndarray],
    store=None,
    *,
    embeddings=None,
    pick: str = "single",
    **options,
) -> PropagationResult:
    """:func:`propagate` with SAM on ``stack`` (reusing ``embeddings``, a StackEmbeddings, if given).

    ``store`` (an EmbeddingStore) provides cached embeddings and keeps the ones
    computed on the way; ``options`` are those of :func:`propagate`.
    """
    from .embed_stack import StackEmbeddings

    if embeddings is None:
        embeddings = StackEmbeddings(predictor, stack, store)
    elif embeddings.predictor is not predictor:
        raise ValueError("the StackEmbeddings given belongs to another predictor")
    return propagate(SamSliceSegmenter(embeddings, pick=pick), annotations, len(embeddings), **options)
