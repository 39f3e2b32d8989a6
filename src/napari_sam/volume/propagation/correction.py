"""Correcting a propagated object: fix one slice with a click, re-propagate from there both ways.

A click on any slice of an object (positive: this belongs to it; negative:
this does not) fixes that slice; from it the object is walked again up and
down, each way until its new mask agrees with what was there (IoU >= 0.9,
the slices beyond are then kept as they were), until the object ends (its
old voxels further on are cleared up to the next slice the user fixed), or
until a slice the user fixed by hand (kept as it is). The whole correction
is one planned change of the label volume: one undo step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ...commit import LabelChange, paintable
from ...geometry import interior_point
from .objects import NEGATIVES_PROMPT, _check_volume, volume_change
from .results import PropagationResult
from .slices import SlicePrompt, check_answer
from .walk import propagate

KEEPS_WHAT_FOLLOWS = ("agrees_with_before", "fixed_slice", "cancelled", "max_distance")


@dataclass
class Correction:
    slice_mask: np.ndarray  # (H, W) bool: the object on the clicked slice after the click
    result: PropagationResult  # the walks from the clicked slice
    change: LabelChange  # the voxels of ``labels`` that change, as one undo step
    cleared: tuple[int, ...] = ()  # slices where the object was found to have ended

    def summary(self) -> str:
        text = self.result.summary()
        if self.cleared:
            text += f"\nthe object ended before slices {list(self.cleared)}: cleared there"
        return text


def correct(
    segmenter,
    labels,
    object_id: int,
    slice_index: int,
    points=None,
    point_labels=None,
    *,
    mask: np.ndarray | None = None,
    fixed_slices: Iterable[int] = (),
    overwrite: bool = False,
    **options,
) -> Correction:
    """Fix object ``object_id`` on ``slice_index`` of the (Z, H, W) ``labels`` and re-propagate from there.

    Give the click(s) as ``points`` ((N, 2) x, y) and ``point_labels`` ((N,) 1 = object,
    0 = not the object), or the corrected slice's ``mask`` itself. ``fixed_slices``
    are slices the user fixed by hand: kept, and no walk goes past them.
    ``options`` are those of :func:`propagate`. Nothing outside the object's own
    voxels changes: other objects are never taken (unless ``overwrite``).
    """
    labels = _check_volume(labels)
    if isinstance(object_id, bool) or not isinstance(object_id, (int, np.integer)) or object_id <= 0:
        raise ValueError(f"object id must be a positive integer (0 is background), got {object_id!r}")
    oid = int(object_id)
    if isinstance(slice_index, bool) or not isinstance(slice_index, (int, np.integer)) or not 0 <= slice_index < len(labels):
        raise ValueError(f"slice {slice_index!r} does not exist: the labels have {len(labels)} slices")
    z = int(slice_index)
    before = labels == oid
    if not before.any():
        raise ValueError(f"object {oid} is not in the labels: segment it first, then correct it")
    others = np.where(before, 0, labels)
    fixed = frozenset(int(f) for f in fixed_slices) - {z}

    # The clicked slice: the corrected mask given, or the model's answer to the clicks.
    if mask is None:
        fixed_mask = _answer_clicks(segmenter, z, before[z], points, point_labels)
    else:
        fixed_mask = np.asarray(mask, dtype=bool)
        if fixed_mask.shape != before.shape[1:]:
            raise ValueError(f"the corrected mask has shape {fixed_mask.shape}, the slices {before.shape[1:]}")
    fixed_mask = fixed_mask & ~(others[z] > 0) if not overwrite else fixed_mask
    if not fixed_mask.any():
        raise ValueError(f"after the correction nothing of object {oid} is left on slice {z}; "
                         "erase the object there instead")

    # Walk from it both ways until the object agrees with what was there, ends, or meets a fixed slice.
    options.setdefault("prompt", NEGATIVES_PROMPT)
    result = propagate(segmenter, {z: fixed_mask}, len(labels), others=others, until_agrees=before,
                       walls=fixed, **options)

    # The object's new voxels: walked slices replaced, slices past a vanished end cleared.
    after = before.copy()
    for q in result.slices:
        after[q] = result.mask[q]
    cleared = []
    for stop in result.stops:
        if stop.reason in KEEPS_WHAT_FOLLOWS or result.cancelled:
            continue
        q = stop.last_slice + stop.direction
        while 0 <= q < len(labels) and q not in fixed and before[q].any():
            after[q] = False
            cleared.append(q)
            q += stop.direction
    target = labels.copy()
    target[before & ~after] = 0
    target[paintable(labels, after, oid, overwrite)] = oid
    return Correction(fixed_mask, result, volume_change(labels, target, (oid,)), tuple(sorted(cleared)))


def _answer_clicks(segmenter, z, current, points, point_labels) -> np.ndarray:
    if points is None or point_labels is None:
        raise ValueError("give the click(s) as points and point_labels, or the corrected mask")
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    point_labels = np.asarray(point_labels).reshape(-1)
    if len(points) == 0 or len(points) != len(point_labels):
        raise ValueError(f"give one label per click: {len(points)} points, {len(point_labels)} labels")
    if not np.isin(point_labels, (0, 1)).all():
        raise ValueError(f"point labels must be 1 (object) or 0 (not the object), got {point_labels.tolist()}")
    h, w = current.shape
    if ((points < 0) | (points >= (w, h))).any():
        raise ValueError(f"a click lies outside the slice of {w} x {h} pixels: {points.tolist()}")
    # The object as it is stays prompted by its deepest point, unless a negative click removes that part.
    if current.any():
        keep = current.copy()
        for (x, y), positive in zip(points, point_labels):
            if not positive:
                keep[max(int(y) - 2, 0): int(y) + 3, max(int(x) - 2, 0): int(x) + 3] = False
        if keep.any():
            x, y = interior_point(keep)
            points, point_labels = np.vstack([points, [[x, y]]]), np.append(point_labels, 1)
    prompt = SlicePrompt(previous_mask=current, points=points, point_labels=point_labels.astype(np.int64))
    return check_answer(segmenter.segment(z, prompt), current.shape, z)
