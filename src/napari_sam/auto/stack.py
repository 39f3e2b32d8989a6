"""Segment everything in a stack: slice by slice, objects linked through z by their overlap.

Each slice is segmented on its own (the generator, or any function giving a
2D label image); then, from the first slice to the last:

1. each object of the slice is matched to at most one object of the slice
   before (or, over a gap of one slice, of the one before that), and each of
   those to at most one: the one-to-one assignment of largest total overlap
   (IoU), pairs below ``link_iou`` never linked;
2. a matched object takes its partner's 3D label, an unmatched one starts a
   new object;
3. an object seen in slices z-2 and z but missing in z-1 is closed over the
   gap: it is painted in z-1 where both neighbours hold it and z-1 is background;
4. at the end, objects spanning fewer than ``min_z_extent`` slices are removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..progress import CancelCheck, ProgressCallback
from .decode import SegmentationCancelled


@dataclass
class StackSegmentation:
    labels: np.ndarray  # uint32 (Z, H, W); 0 is background
    slices_done: int  # slices segmented (all of them unless cancelled)
    cancelled: bool = False
    empty_slices: list[int] = field(default_factory=list)  # slices where nothing was found

    @property
    def n_objects(self) -> int:
        return int(len(np.unique(self.labels[self.labels > 0])))


def check_linking(link_iou: float, max_gap: int, min_z_extent: int) -> None:
    if isinstance(link_iou, bool) or not isinstance(link_iou, (int, float)) or not 0.0 < link_iou <= 1.0:
        raise ValueError(f"link_iou must lie in (0, 1], got {link_iou!r}")
    if isinstance(max_gap, bool) or max_gap not in (0, 1):
        raise ValueError(f"max_gap must be 0 (no gaps closed) or 1 (gaps of one slice closed), got {max_gap!r}")
    if isinstance(min_z_extent, bool) or not isinstance(min_z_extent, int) or min_z_extent < 1:
        raise ValueError(f"min_z_extent must be a whole number of slices >= 1, got {min_z_extent!r}")


def link_slices(segment_slice: Callable[[int], np.ndarray], n_slices: int, *, link_iou: float = 0.3,
                max_gap: int = 1, min_z_extent: int = 1, progress: ProgressCallback | None = None,
                should_cancel: CancelCheck | None = None) -> StackSegmentation:
    """Link the 2D labels ``segment_slice(z)`` of each slice into one 3D label volume (see the module)."""
    check_linking(link_iou, max_gap, min_z_extent)
    volume = None
    next_id = 1
    recent: list[tuple[int, np.ndarray]] = []  # (z, 3D labels of slice z), the last max_gap + 1 slices
    empty, done, cancelled = [], 0, False
    if progress is not None:
        progress(0, n_slices)
    for z in range(n_slices):
        if should_cancel is not None and should_cancel():
            cancelled = True
            break
        try:
            flat = np.asarray(segment_slice(z))
        except SegmentationCancelled:
            cancelled = True  # within the slice: the finished slices stay
            break
        if volume is None:
            volume = np.zeros((n_slices, *flat.shape), dtype=np.uint32)
        if flat.shape != volume.shape[1:]:
            raise ValueError(f"slice {z} was segmented to shape {flat.shape}, expected {volume.shape[1:]}")
        if not flat.any():
            empty.append(z)
        out, next_id = _link(flat, recent, z, link_iou, max_gap, next_id)
        volume[z] = out
        recent = [(zz, lab) for zz, lab in recent if zz >= z - max_gap] + [(z, out)]
        if max_gap and z >= 2:
            _close_gap(volume, z)
        done += 1
        if progress is not None:
            progress(done, n_slices)
    if volume is None:
        volume = np.zeros((0, 0, 0), dtype=np.uint32)
    _remove_short(volume, min_z_extent)
    return StackSegmentation(volume, done, cancelled, empty)


def _link(flat: np.ndarray, recent, z: int, link_iou: float, max_gap: int, next_id: int):
    """2D labels -> 3D labels of slice z, matched one-to-one to the objects of the recent slices."""
    ids = np.unique(flat[flat > 0])
    out = np.zeros(flat.shape, dtype=np.uint32)
    if ids.size == 0:
        return out, next_id
    candidates = {}  # 3D label -> its latest 3D-labelled slice among the recent ones
    for zz, lab in recent:
        if zz >= z - 1 - max_gap:
            for t in np.unique(lab[lab > 0]):
                candidates[int(t)] = lab  # later slices overwrite earlier ones
    tracks = sorted(candidates)
    assigned = {}
    if tracks:
        iou = np.zeros((len(ids), len(tracks)))
        index_of = {t: j for j, t in enumerate(tracks)}
        for lab in {id(v): v for v in candidates.values()}.values():
            here = [t for t in np.unique(lab[lab > 0]) if candidates[int(t)] is lab]
            _fill_iou(iou, flat, ids, lab, [int(t) for t in here], index_of)
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols):
            if iou[r, c] >= link_iou:
                assigned[int(ids[r])] = tracks[c]
    lut = np.zeros(int(flat.max()) + 1, dtype=np.uint32)
    for i in ids:
        if int(i) in assigned:
            lut[i] = assigned[int(i)]
        else:
            lut[i] = next_id
            next_id += 1
    out = lut[flat]
    return out, next_id


def _fill_iou(iou, flat, ids, lab, tracks, index_of) -> None:
    """IoU of every object of ``flat`` with the ``tracks`` as they appear in ``lab``."""
    if not tracks:
        return
    both = (flat > 0) & (lab > 0)
    pairs, counts = np.unique(np.stack([flat[both], lab[both]]), axis=1, return_counts=True)
    a_area = {int(i): int(n) for i, n in zip(*np.unique(flat[flat > 0], return_counts=True))}
    b_area = {int(t): int(n) for t, n in zip(*np.unique(lab[lab > 0], return_counts=True))}
    row_of = {int(i): r for r, i in enumerate(ids)}
    wanted = set(tracks)
    for (a, b), n in zip(pairs.T, counts):
        a, b = int(a), int(b)
        if b in wanted:
            iou[row_of[a], index_of[b]] = n / (a_area[a] + b_area[b] - n)


def _close_gap(volume: np.ndarray, z: int) -> None:
    """Paint slice z-1 where slices z-2 and z hold the same object that z-1 lacks, and z-1 is background."""
    before, gap, after = volume[z - 2], volume[z - 1], volume[z]
    missing = set(np.unique(before[before > 0])) & set(np.unique(after[after > 0])) - set(np.unique(gap[gap > 0]))
    for t in missing:
        fill = (before == t) & (after == t) & (gap == 0)
        gap[fill] = t


def _remove_short(volume: np.ndarray, min_z_extent: int) -> None:
    if min_z_extent <= 1 or volume.size == 0:
        return
    present = [set(np.unique(s[s > 0]).tolist()) for s in volume]
    first, last = {}, {}
    for z, ids in enumerate(present):
        for t in ids:
            first.setdefault(t, z)
            last[t] = z
    short = [t for t in first if last[t] - first[t] + 1 < min_z_extent]
    if short:
        volume[np.isin(volume, short)] = 0


def segment_stack(stack, generator, *, embeddings=None, link_iou: float = 0.3, max_gap: int = 1,
                  min_z_extent: int = 1, progress: ProgressCallback | None = None,
                  should_cancel: CancelCheck | None = None, on_slice: Callable[[int, list], None] | None = None
                  ) -> StackSegmentation:
    """Segment every slice of ``stack`` with ``generator`` (an AutomaticMaskGenerator) and link them through z.

    ``embeddings``: a :class:`~napari_sam.volume.StackEmbeddings` of this stack
    (its cache and the stack's intensity range; built here when None).
    ``on_slice(z, records)`` sees each slice's masks as they are found.
    Cancelling keeps the finished slices (``cancelled`` is then True).
    """
    from ..volume import StackEmbeddings, check_stack
    from .labels import masks_to_labels

    stack = check_stack(stack)
    check_linking(link_iou, max_gap, min_z_extent)
    if embeddings is None:
        embeddings = StackEmbeddings(generator.predictor, stack, source=generator.source)
    if len(embeddings) != stack.shape[0]:
        raise ValueError(f"the embeddings are of a stack of {len(embeddings)} slices, this stack has {stack.shape[0]}")
    def segment_slice(z: int) -> np.ndarray:
        plane = np.asarray(stack[z])
        if plane.min() == plane.max():
            return np.zeros(plane.shape, dtype=np.uint32)  # a blank slice: nothing to find
        image = plane if generator.settings.crop_n_layers > 0 else None
        decoded = generator.decode_grid(image, embedding=embeddings.get(z), intensity_range=embeddings.intensity_range,
                                        refilter=False, should_cancel=should_cancel)
        records = generator.filter(decoded)
        if on_slice is not None:
            on_slice(z, records)
        return masks_to_labels(records, plane.shape)[0]

    return link_slices(segment_slice, stack.shape[0], link_iou=link_iou, max_gap=max_gap,
                       min_z_extent=min_z_extent, progress=progress, should_cancel=should_cancel)
