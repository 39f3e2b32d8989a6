"""Walking from the annotated slices through their neighbours, one slice at a time.

Below the lowest and above the highest annotated slice there is one walk
each. Between two annotated slices we fill from both ends and *meet in the
middle*: each slice is segmented from the nearer annotation (the one
before, on a tie), because errors grow with every step. If one walk stops
early, the walk from the other end goes on past the middle until it reaches
the slice where the first one stopped (or stops too), so one bad slice near
one annotation does not leave a hole that the other annotation could fill.
Annotated slices keep the user's mask unchanged.

Each step: prompt the next slice from the masks before it (:mod:`.prompting`),
shape the answer (:mod:`.shaping`: the object's signal, shrinking past the
widest slice, other objects kept), then decide whether the walk goes on
(:mod:`.stopping`).

Two presets: ``"object"`` (the default) follows an object with everything
that helped in ``benchmarks/bench_propagation.py``; ``"baseline"`` is the
walk as it was before (box + point prompt, IoU jump test, no shaping), kept
as the reference the benchmark compares with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from ...progress import CancelCheck, ProgressCallback
from ...geometry import mask_iou
from .annotations import check_annotations
from .prompting import prompt_from_mask
from .results import PropagationResult, SliceOutcome, Stop
from .shaping import SHRINKING_BELOW, shaped_and_grown
from .signal import calibrate
from .slices import SliceSegmenter, check_answer
from .stopping import DEFAULT_IOU_THRESHOLD, DEFAULT_VANISH_FRACTION, check_settings, refusal

SIGNAL_RISE = 0.1  # of the annotation's signal: the rise into another object (the texture's noise is below)
AGREEMENT = 0.9  # a corrected walk whose mask has this IoU with the object as it was has rejoined it
# A regrowth (max_regrowth, "Propagate all") before the walk has passed the widest slice: True keeps the answer within
# reach of the mask before (as past the widest slice, shaping.grow_limit) and goes on, False ends the walk. Measured
# (benchmarks/_diag_ends.py, Propagate all, mean / median / worst 3D IoU, below 0.5): tuning stacks 0.866 / 0.908 /
# 0.587 / 0 without, 0.863 / 0.903 / 0.587 / 0 with (one nucleus takes its neighbour on two slices); seeds 21-26 with
# the "compact" click (prompts.choose_candidate), where the click is smaller and the walk's first step bleeds, 0.848 /
# 0.891 / 0.418 / 3 without, 0.852 / 0.891 / 0.468 / 1 with. Off, as chosen on the tuning stacks.
REGROWTH_CLIP = False

PRESETS = {
    "baseline": {"prompt": ("box", "point"), "vanish_fraction": 0.0, "overlap": "iou", "fit_signal": False,
                 "shrink": False, "signal_valley": False},
    "object": {"prompt": ("box", "point"), "vanish_fraction": 0.0, "overlap": "smaller",
               "fit_signal": True, "shrink": True, "signal_valley": True},
}


class _Walk:
    """One walk from an annotated slice in one direction; it can be resumed past a meeting point."""

    def __init__(self, annotation: int, direction: int, mask: np.ndarray, low_res, level=None):
        self.annotation = annotation
        self.direction = direction
        self.index = annotation
        self.mask = mask
        self.before: np.ndarray | None = None  # the mask of the slice before self.index
        self.negatives: list = []  # (x, y) of the neighbours told to the model on the last step
        self.low_res = low_res
        self.level = level  # the object's edge level in its signal, or None
        self.smallest_area = self.largest_area = int(np.count_nonzero(mask))
        self.strengths: list[tuple[int, float]] = []  # (slice, signal strength) of the slices taken
        self.stop: Stop | None = None

    @property
    def shrinking(self) -> bool:
        """Past the object's widest cross-section on this walk."""
        return np.count_nonzero(self.mask) < SHRINKING_BELOW * self.largest_area

    def end(self, reason: str, **details) -> None:
        self.stop = Stop(self.annotation, self.direction, self.index, reason, **details)


class _Propagation:
    def __init__(self, segmenter, n_slices, settings, progress, should_cancel, result, total, others=None,
                 until_agrees=None, walls=frozenset()):
        self.segmenter = segmenter
        self.until_agrees = until_agrees  # (Z, H, W) bool: the object as it was (a correction stops on agreeing)
        self.walls = walls  # slices no walk enters (slices the user fixed by hand)
        self.others = others  # (Z, H, W) ids of other objects (0: free), or None
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
            if z in self.walls:
                walk.end("fixed_slice")
                return
            others = None if self.others is None else self.others[z]
            # Ask the model, with a prompt made from the masks before (and the neighbours here and before).
            neighbours = () if self.others is None else (others, self.others[walk.index])
            prompt = prompt_from_mask(walk.mask, walk.low_res, self.s["prompt"], self.s["box_margin"],
                                      others=neighbours, before=walk.before, carried=walk.negatives)
            seg = self.segmenter.segment(z, prompt)
            answer = mask = check_answer(seg, walk.mask.shape, z)
            self.done += 1
            if self.progress is not None:
                self.progress(min(self.done, self.total), self.total)
            # Keep only what the object can own: its signal, its shrinking outline, no other object.
            plane = self.segmenter.slice_image(z) if walk.level is not None else None
            shaping = dict(plane=plane, level=walk.level, shrinking=self.s["shrink"] and walk.shrinking,
                           others=None if others is None else others > 0, z_spacing=self.s["z_spacing"])
            # Written: the mask grown near the widest slice (shaping.CORE_BELOW_STEEPEST). The walk follows and
            # judges the mask without that growth, so it never compounds from slice to slice.
            mask, written = shaped_and_grown(mask, walk.mask, largest=walk.largest_area, **shaping)
            # Go on, or end the walk: vanished, jumped, grown again, its signal rising again.
            reason, figures = refusal(self.s, walk.mask, walk.smallest_area, mask, walk.largest_area)
            if reason == "regrowth" and REGROWTH_CLIP and not walk.shrinking:
                # Before its widest slice a small object grows by half at most: twice the mask at once is its
                # neighbour bleeding in (in the plane), so the answer is kept within reach of the mask before.
                clipped = shaped_and_grown(answer, walk.mask, largest=walk.largest_area,
                                           **{**shaping, "shrinking": True})
                again, again_figures = refusal(self.s, walk.mask, walk.smallest_area, clipped[0], walk.largest_area)
                if again is None:
                    reason, figures, (mask, written) = None, again_figures, clipped
            if reason is None and plane is not None and self.s["signal_valley"] and walk.shrinking and mask.any():
                reason = self._signal_valley(walk, z, walk.level.strength(plane, mask))
            if reason is not None:
                walk.end(reason, rejected_slice=z, **figures)
                return
            area, iou = figures["area"], figures["iou"]
            walk.smallest_area = min(walk.smallest_area, area)
            walk.largest_area = max(walk.largest_area, area)
            self.result.mask[z] = written
            self.result.slices[z] = SliceOutcome(
                z, "propagated", area, walk.annotation, walk.index, float(seg.score), iou
            )
            walk.index, walk.mask, walk.before = z, mask, walk.mask
            if prompt.point_labels is not None:
                walk.negatives = [tuple(p) for p, lab in zip(prompt.points, prompt.point_labels) if lab == 0]
            walk.low_res = None if seg.low_res is None else np.asarray(seg.low_res)
            if self.until_agrees is not None and self.until_agrees[z].any() and (
                    mask_iou(mask, self.until_agrees[z]) >= AGREEMENT):
                walk.end("agrees_with_before")
                return

    def _signal_valley(self, walk: _Walk, z: int, strength: float) -> str | None:
        """Past its widest slice an object's signal only fades; rising again by a tenth of the annotation's
        means the walk crossed the gap into another object stacked along z. The slices taken after the
        faintest one are then given back, as they were the next object's rise."""
        walk.strengths.append((z, strength))
        faintest_z, faintest = min(walk.strengths, key=lambda item: item[1])
        if strength < faintest + SIGNAL_RISE:
            return None
        for q, _ in walk.strengths:
            if (q - faintest_z) * walk.direction > 0 and q != z and self.result.slices.get(q, None) is not None \
                    and self.result.slices[q].status == "propagated":
                self.result.mask[q] = False
                del self.result.slices[q]
        walk.index = faintest_z
        return "signal_rose_again"

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
    prompt: Iterable[str] | None = None,
    box_margin: float = 0.1,
    annotation_logits: Mapping[int, np.ndarray] | None = None,
    max_distance: int | None = None,
    max_regrowth: float | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    preset: str = "object",
    vanish_fraction: float | None = None,
    overlap: str | None = None,
    fit_signal: bool | None = None,
    shrink: bool | None = None,
    signal_valley: bool | None = None,
    others: np.ndarray | None = None,
    until_agrees: np.ndarray | None = None,
    walls: Iterable[int] = (),
    z_spacing: float | None = None,
) -> PropagationResult:
    """Segment the object given on the annotated slices through its neighbouring slices.

    Parameters
    ----------
    segmenter : answers a prompt on a slice (:class:`SamSliceSegmenter`, or an oracle in tests).
    annotations : {slice index: (H, W) mask} of the slices the user segmented.
    n_slices : slices in the stack; taken from ``len(segmenter)`` when not given.
    iou_threshold : a new mask whose IoU with the previous slice's mask is lower ends the walk (0 to 1).
    min_area : a mask with fewer pixels counts as vanished.
    prompt : which of "box", "point", "points", "mask", "negatives" prompt the next slice
        (see :mod:`.prompting`); default: the preset's.
    box_margin : the box grows by this fraction of its size on each side.
    annotation_logits : {slice index: (1, h, w) low-res logits} of annotated slices segmented
        with the model, used as the first mask prompt when ``"mask"`` is in ``prompt``.
    max_distance : walk at most this many slices away from an annotation.
    max_regrowth : stop when the area exceeds the smallest area seen on the walk by more than this
        fraction (e.g. 0.25); None (default) never stops for this.
    progress : ``progress(done, total)`` after each slice; total is the most slices there could be.
    should_cancel : asked before each slice; when it returns True the result so far is returned
        with ``cancelled=True``.
    preset : "object" (default) or "baseline" (the walk before issue 18); gives the defaults of
        ``prompt``, ``vanish_fraction``, ``overlap``, ``fit_signal`` and ``shrink``.
    vanish_fraction : a mask smaller than this part of the largest one seen on the walk has vanished.
    overlap : the jump test: "iou" or "smaller" (the share of the smaller mask inside the other).
    fit_signal : cut each mask at the object's edge level calibrated on its annotated slice
        (needs a segmenter with ``slice_image(index)``; skipped where the annotation's edge is
        not a level of its signal).
    shrink : past the widest slice, a mask may reach only a few pixels beyond the previous one.
    signal_valley : past the widest slice, stop where the object's signal rises again (with the fit).
    others : (Z, H, W) integer ids of other objects (0 = free), never taken and, with "negatives"
        in ``prompt``, given to the model as negative points.
    until_agrees : (Z, H, W) bool, the object as it was: a walk ends on the first slice whose new
        mask agrees with it (IoU >= 0.9), as a correction does.
    walls : slices no walk enters (the slices the user fixed by hand, during a correction).
    z_spacing : the distance between slices in pixel widths (the image's z scale over its xy scale); the
        per-slice limits scale with it (:mod:`.anisotropy`). None: 2, the spacing they were measured with.
    """
    job, walk, order = start_walks(
        segmenter, annotations, n_slices, iou_threshold=iou_threshold, min_area=min_area, prompt=prompt,
        box_margin=box_margin, annotation_logits=annotation_logits, max_distance=max_distance,
        max_regrowth=max_regrowth, progress=progress, should_cancel=should_cancel, preset=preset,
        vanish_fraction=vanish_fraction, overlap=overlap, fit_signal=fit_signal, shrink=shrink,
        signal_valley=signal_valley, others=others, until_agrees=until_agrees, walls=walls, z_spacing=z_spacing)
    result, n_slices, total = job.result, job.n_slices, job.total
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


def start_walks(segmenter, annotations, n_slices=None, *, iou_threshold=DEFAULT_IOU_THRESHOLD, min_area=1, prompt=None,
                box_margin=0.1, annotation_logits=None, max_distance=None, max_regrowth=None, progress=None,
                should_cancel=None, preset="object", vanish_fraction=None, overlap=None, fit_signal=None, shrink=None,
                signal_valley=None, others=None, until_agrees=None, walls=(), z_spacing=None):
    """The checked setup of :func:`propagate` (same arguments): (the job, ``walk(slice, direction)`` making a walk
    from an annotated slice, the annotated slices in order). ``others`` may also be any object whose ``[z]`` gives
    the other objects' ids on slice z, read when the walk gets there (as "Propagate all" together does)."""
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
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    chosen = dict(PRESETS[preset])
    given = {"prompt": prompt, "vanish_fraction": vanish_fraction, "overlap": overlap, "fit_signal": fit_signal,
             "shrink": shrink, "signal_valley": signal_valley}
    chosen.update({k: v for k, v in given.items() if v is not None})
    settings = check_settings(iou_threshold, min_area, chosen.pop("prompt"), box_margin, max_distance, max_regrowth,
                              z_spacing=z_spacing, **chosen)
    logits = {} if annotation_logits is None else {int(k): np.asarray(v) for k, v in annotation_logits.items()}

    shape = next(iter(anns.values())).shape
    others = others if hasattr(others, "live") else _check_others(others, (n_slices, *shape))
    if until_agrees is not None:
        until_agrees = np.asarray(until_agrees, dtype=bool)
        if until_agrees.shape != (n_slices, *shape):
            raise ValueError(f"until_agrees has shape {until_agrees.shape}, expected {(n_slices, *shape)}")
    walls = frozenset(int(w) for w in walls) - set(anns)
    levels = _signal_levels(segmenter, anns) if settings["fit_signal"] else {}
    result = PropagationResult(mask=np.zeros((n_slices, *shape), dtype=bool))
    for z, m in anns.items():
        result.mask[z] = m
        result.slices[z] = SliceOutcome(z, "annotated", int(np.count_nonzero(m)), z)
    total = n_slices - len(anns)
    job = _Propagation(segmenter, n_slices, settings, progress, should_cancel, result, total, others,
                       until_agrees, walls)
    if progress is not None:
        progress(0, total)

    order = sorted(anns)
    walk = lambda z, d: _Walk(z, d, anns[z], logits.get(z), levels.get(z))  # noqa: E731
    return job, walk, order


def _signal_levels(segmenter, annotations) -> dict:
    """{annotated slice: the object's edge level there}, where the segmenter can show its slices."""
    image = getattr(segmenter, "slice_image", None)
    if image is None:
        return {}
    levels = {z: calibrate(image(z), m) for z, m in annotations.items()}
    return {z: level for z, level in levels.items() if level is not None}


def _check_others(others, shape) -> np.ndarray | None:
    if others is None:
        return None
    others = np.asarray(others)
    if others.shape != shape:
        raise ValueError(f"others (the other objects) has shape {others.shape}, the stack's masks {shape}; they must match")
    if others.dtype.kind not in "uib":
        raise TypeError(f"others must hold integer object ids (0 = free), got dtype {others.dtype}")
    return others
