"""Walking from the annotated slices through their neighbours, one slice at a time.

Below the lowest and above the highest annotated slice there is one walk
each. Between two annotated slices we fill from both ends and *meet in the
middle*: each slice is segmented from the nearer annotation (the one
before, on a tie), because errors grow with every step. If one walk stops
early, the walk from the other end goes on past the middle until it reaches
the slice where the first one stopped (or stops too), so one bad slice near
one annotation does not leave a hole that the other annotation could fill.
Annotated slices keep the user's mask unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ...progress import CancelCheck, ProgressCallback
from .annotations import check_annotations
from .prompting import DEFAULT_PROMPT, prompt_from_mask
from .results import PropagationResult, SliceOutcome, Stop
from .slices import SliceSegmenter, check_answer
from .stopping import DEFAULT_IOU_THRESHOLD, check_settings, refusal


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
            mask = check_answer(seg, walk.mask.shape, z)
            self.done += 1
            if self.progress is not None:
                self.progress(min(self.done, self.total), self.total)
            reason, figures = refusal(self.s, walk.mask, walk.smallest_area, mask)
            if reason is not None:
                walk.end(reason, rejected_slice=z, **figures)
                return
            area, iou = figures["area"], figures["iou"]
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
    anns = check_annotations(annotations, n_slices)
    settings = check_settings(iou_threshold, min_area, prompt, box_margin, max_distance, max_regrowth)
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
