"""Tiles' objects into one label image, written window by window into any array-like (zarr, memmap, numpy).

Each tile owns the objects centred in its core (:mod:`.objects`), so with an
exact segmenter nothing is left to resolve. A real model draws the same
nucleus slightly differently in two windows, and the two centres may fall on
either side of a core's edge: both tiles keep it. So each object is checked
against the objects already written where it lies:

* it overlaps one of them with IoU >= ``duplicate_iou``: the same object
  seen twice; the one written first stays (tiles go in raster order);
* else it takes the pixels no earlier object holds, and is dropped if
  that is less than half of it (as :mod:`napari_sam.auto.labels` does within
  one image: it is mostly made of objects already placed).

Only the current tile's window of the output is read and written, so memory
holds one window of labels, whatever the image's size.
"""

from __future__ import annotations

import numpy as np

from ..auto.labels import MIN_KEPT_FRACTION
from .objects import TileResult
from .reading import read_window

#: Two objects overlapping at least this much are one object seen by two tiles.
DUPLICATE_IOU = 0.5


def label_output(out, shape, *, clear: bool = True):
    """``out`` checked for ``shape`` (a new uint32 numpy array when None), set to 0 band by band if ``clear``."""
    shape = tuple(int(s) for s in shape)
    if out is None:
        return np.zeros(shape, np.uint32)
    if not all(hasattr(out, a) for a in ("shape", "dtype", "__setitem__")):
        raise TypeError(f"out must be an array-like to write labels into (zarr, memmap, numpy), got {type(out).__name__}")
    if tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, the labels need {shape} (the image's rows, columns)")
    if np.dtype(out.dtype).kind not in "ui":
        raise ValueError(f"out has dtype {out.dtype}: labels need an integer type (uint32 holds 4 billion objects)")
    if clear:
        band = max(1, (1 << 24) // max(shape[1], 1))
        for y in range(0, shape[0], band):
            out[y:y + band] = 0
    return out


class LabelStitcher:
    """Writes the objects of tile after tile into ``out`` and keeps the object table."""

    def __init__(self, out, shape, *, duplicate_iou: float = DUPLICATE_IOU, clear: bool = True) -> None:
        if not 0.0 < float(duplicate_iou) <= 1.0:
            raise ValueError(f"duplicate_iou must lie in (0, 1], got {duplicate_iou!r}")
        self.out = label_output(out, shape, clear=clear)
        self.shape = tuple(int(s) for s in shape)
        self.duplicate_iou = float(duplicate_iou)
        self.max_label = int(np.iinfo(np.dtype(self.out.dtype)).max)
        self.rows: list[dict] = []
        self._areas = [0]  # the area of each written label (index = label)
        self.duplicates = 0  # objects found again by a neighbouring tile
        self.overlapped = 0  # objects dropped, mostly covered by objects already written

    @property
    def n_objects(self) -> int:
        return len(self.rows)

    def add(self, result: TileResult) -> int:
        """Write ``result``'s objects; returns how many became new labels."""
        if not result.objects:
            return 0
        box = result.tile.box
        y0, _, x0, _ = box
        region = read_window(self.out, box)
        added = 0
        for obj in result.objects:
            (oy, ox), (h, w) = obj.offset, obj.mask.shape
            sub = region[oy - y0:oy - y0 + h, ox - x0:ox - x0 + w]  # a view: writes go into region
            area = obj.area
            if area == 0 or self._is_duplicate(sub[obj.mask], area):
                continue
            free = obj.mask & (sub == 0)
            kept = int(free.sum())
            if kept < MIN_KEPT_FRACTION * area:
                self.overlapped += 1
                continue
            label = len(self._areas)
            if label > self.max_label:
                raise ValueError(f"more than {self.max_label} objects do not fit labels of type {self.out.dtype}: "
                                 "write into a uint32 array")
            sub[free] = label
            self._areas.append(kept)
            self.rows.append(_row(label, free, obj))
            added += 1
        if added:
            self.out[box[0]:box[1], box[2]:box[3]] = region
        return added

    def _is_duplicate(self, under: np.ndarray, area: int) -> bool:
        """Whether the labels ``under`` the new object hold one it matches with IoU >= duplicate_iou."""
        under = under[under > 0]
        if under.size == 0:
            return False
        found, overlap = np.unique(under, return_counts=True)
        for label, inter in zip(found, overlap):
            if label >= len(self._areas):  # a label that was in `out` before (clear=False): not ours to match
                continue
            union = area + self._areas[int(label)] - int(inter)
            if inter / union >= self.duplicate_iou:
                self.duplicates += 1
                return True
        return False


def _row(label: int, placed: np.ndarray, obj) -> dict:
    """The object table's row (napari_sam.auto.labels.TABLE_COLUMNS) of what was written."""
    rr, cc = np.nonzero(placed)
    oy, ox = obj.offset
    return {
        "label": label, "area": int(rr.size),
        "bbox_x0": ox + int(cc.min()), "bbox_y0": oy + int(rr.min()),
        "bbox_x1": ox + int(cc.max()) + 1, "bbox_y1": oy + int(rr.max()) + 1,
        "centroid_y": round(oy + float(rr.mean()), 2), "centroid_x": round(ox + float(cc.mean()), 2),
        "predicted_iou": obj.predicted_iou, "stability_score": obj.stability_score, "mask_index": obj.index,
    }
