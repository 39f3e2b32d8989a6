"""Mask geometry: the box, interior point, area and overlap of binary masks.

One convention for the whole package. A box is ``(x0, y0, x1, y1)`` in
pixel-edge coordinates of the plane: pixel ``(row, col)`` covers
``[col, col + 1) x [row, row + 1)``, so a mask whose pixels span columns 3..7
has ``x0 = 3`` and ``x1 = 8``. These are the coordinates SAM's prompts use
(an image of width W spans ``[0, W]``), and ``x1 - x0`` is the object's width
in pixels. Commit, propagation, training prompts and automatic segmentation
all take their boxes from here; code that must match Segment Anything's
inclusive ``bbox`` output converts with :func:`box_to_inclusive`.

NumPy and SciPy only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _plane(mask) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"a mask must be 2D (rows, columns), got shape {arr.shape}")
    return arr if arr.dtype == bool else arr != 0


def mask_box(mask, margin: float = 0.0) -> np.ndarray:
    """``(x0, y0, x1, y1)`` around the mask's pixels (float64, pixel edges).

    ``margin`` enlarges the box by that fraction of its width and height on
    each side (at least one pixel), clipped to the plane. An empty mask has
    no box: ValueError.
    """
    arr = _plane(mask)
    rows = np.flatnonzero(arr.any(axis=1))
    cols = np.flatnonzero(arr.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty: it has no bounding box")
    x0, x1, y0, y1 = float(cols[0]), float(cols[-1] + 1), float(rows[0]), float(rows[-1] + 1)
    if margin < 0 or not np.isfinite(margin):
        raise ValueError(f"margin must be a fraction >= 0, got {margin!r}")
    if margin > 0:
        dx = max(1.0, margin * (x1 - x0))
        dy = max(1.0, margin * (y1 - y0))
        x0, x1, y0, y1 = x0 - dx, x1 + dx, y0 - dy, y1 + dy
    H, W = arr.shape
    return np.array([max(x0, 0.0), max(y0, 0.0), min(x1, float(W)), min(y1, float(H))], dtype=np.float64)


def masks_boxes(masks) -> np.ndarray:
    """Boxes (N, 4) of a stack of masks (N, H, W) in one pass; an empty mask gets ``[0, 0, 0, 0]``."""
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {arr.shape}")
    arr = arr if arr.dtype == bool else arr != 0
    out = np.zeros((arr.shape[0], 4), dtype=np.float64)
    if arr.shape[0] == 0:
        return out
    rows = arr.any(axis=2)  # (N, H)
    cols = arr.any(axis=1)  # (N, W)
    present = rows.any(axis=1)
    H, W = arr.shape[1:]
    first_row = np.argmax(rows, axis=1)
    last_row = H - np.argmax(rows[:, ::-1], axis=1)
    first_col = np.argmax(cols, axis=1)
    last_col = W - np.argmax(cols[:, ::-1], axis=1)
    out[present] = np.stack([first_col, first_row, last_col, last_row], axis=1)[present]
    return out


def box_to_inclusive(box) -> np.ndarray:
    """Pixel-edge boxes -> Segment Anything's inclusive form (last pixel's index as x1, y1)."""
    arr = np.array(box, dtype=np.float64, copy=True)
    arr[..., 2:] -= 1
    return arr


def box_xywh(box) -> np.ndarray:
    """``(x0, y0, x1, y1)`` -> ``(x0, y0, width, height)`` in the same convention."""
    arr = np.asarray(box, dtype=np.float64)
    return np.concatenate([arr[..., :2], arr[..., 2:] - arr[..., :2]], axis=-1)


def interior_point(mask) -> tuple[float, float]:
    """(x, y) of the pixel farthest from the mask's edge: inside the object even for curved shapes.

    The coordinates are the pixel's column and row. The plane's border
    counts as an edge, so an object cut by the border is clicked away from it.
    """
    arr = _plane(mask)
    rows = np.flatnonzero(arr.any(axis=1))
    cols = np.flatnonzero(arr.any(axis=0))
    if rows.size == 0:
        raise ValueError("the mask is empty: it has no interior point")
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    # Crop (with a one-pixel frame, so the image border counts as an edge too) to keep it fast.
    crop = np.pad(arr[r0:r1, c0:c1], 1)
    dist = ndimage.distance_transform_edt(crop)
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(c0 + c - 1), float(r0 + r - 1)


def mask_area(mask) -> int:
    """Number of object pixels."""
    return int(np.count_nonzero(mask))


def mask_iou(a, b) -> float:
    """Intersection over union of two masks of the same shape; 1.0 when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"masks of shapes {a.shape} and {b.shape} cannot be compared")
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 1.0


def box_iou(a, b) -> np.ndarray:
    """IoU matrix (N, M) of two sets of pixel-edge boxes (N, 4) and (M, 4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
