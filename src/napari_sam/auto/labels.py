"""Masks (which may overlap) to one label image (which cannot), and a table of the objects.

The overlap rule, documented for users: **where masks overlap, the smaller
mask wins**, because the generator's large masks are often a cluster of
nuclei whose members it also found. Masks are placed from the smallest to
the largest, each on the pixels no smaller mask took; **a mask that would
keep less than half of its pixels is dropped** (it is mostly made of objects
already placed). Labels are numbered 1, 2, ... in the order of the input (the
generator's order), skipping dropped masks; 0 is background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import rle

#: A mask keeping less than this fraction of its pixels after smaller masks took theirs is dropped.
MIN_KEPT_FRACTION = 0.5

TABLE_COLUMNS = ("label", "area", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1", "centroid_y", "centroid_x",
                 "predicted_iou", "stability_score", "mask_index")


def as_mask(item, shape) -> np.ndarray:
    """A bool (H, W) mask from a mask array, a generator record, or an uncompressed RLE dict."""
    if isinstance(item, dict):
        seg = item.get("segmentation", item)
        mask = rle.from_dict(seg) if isinstance(seg, dict) else np.asarray(seg)
    else:
        mask = np.asarray(item)
    if mask.shape != tuple(shape):
        raise ValueError(f"a mask of shape {mask.shape} does not fit the label image of shape {tuple(shape)}")
    return mask if mask.dtype == bool else mask != 0


def masks_to_labels(masks, shape) -> tuple[np.ndarray, list[dict]]:
    """``(labels, table)``: a uint32 (H, W) label image and one row per kept object (see :data:`TABLE_COLUMNS`).

    ``masks``: the generator's records, bool arrays, or an (N, H, W) array.
    Bounding boxes in the table are pixel edges (x1 = last column + 1).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (rows, columns) of the label image, got {shape}")
    items = list(masks)
    bools = [as_mask(m, shape) for m in items]
    areas = np.array([int(m.sum()) for m in bools], dtype=np.int64)
    owner = np.full(shape, -1, dtype=np.int64)  # index of the mask that holds each pixel
    for i in np.argsort(areas, kind="stable"):  # smallest first: the smaller mask wins
        if areas[i] == 0:
            continue
        free = bools[i] & (owner < 0)
        if free.sum() < MIN_KEPT_FRACTION * areas[i]:
            continue
        owner[free] = i
    kept = np.unique(owner[owner >= 0])  # in input order
    lut = np.zeros(len(items) + 1, dtype=np.uint32)
    lut[kept + 1] = np.arange(1, len(kept) + 1, dtype=np.uint32)
    labels = lut[owner + 1]
    return labels, object_table(labels, [items[i] if isinstance(items[i], dict) else {} for i in kept], kept)


def object_table(labels: np.ndarray, records=None, mask_index=None) -> list[dict]:
    """One row per label 1..n of ``labels``: area, pixel-edge box, centroid, and the record's scores if given."""
    n = int(labels.max()) if labels.size else 0
    rows = []
    if n == 0:
        return rows
    index = np.arange(1, n + 1)
    areas = ndimage.sum_labels(np.ones(labels.shape, np.int64), labels, index)
    centroids = ndimage.center_of_mass(np.ones(labels.shape), labels, index)
    slices = ndimage.find_objects(labels.astype(np.int64), max_label=n)
    for k in range(n):
        if slices[k] is None:
            continue
        ys, xs = slices[k][-2], slices[k][-1]
        record = records[k] if records is not None and k < len(records) else {}
        row = {}
        if labels.ndim == 3:  # a stack: where the object lies in z
            row = {"bbox_z0": slices[k][0].start, "bbox_z1": slices[k][0].stop,
                   "centroid_z": round(float(centroids[k][0]), 2)}
        rows.append({
            "label": k + 1, **row, "area": int(areas[k]),
            "bbox_x0": xs.start, "bbox_y0": ys.start, "bbox_x1": xs.stop, "bbox_y1": ys.stop,
            "centroid_y": round(float(centroids[k][-2]), 2), "centroid_x": round(float(centroids[k][-1]), 2),
            "predicted_iou": record.get("predicted_iou"), "stability_score": record.get("stability_score"),
            "mask_index": None if mask_index is None else int(mask_index[k]),
        })
        if labels.ndim == 3:
            for unused in ("predicted_iou", "stability_score", "mask_index"):
                rows[-1].pop(unused)
    return rows
