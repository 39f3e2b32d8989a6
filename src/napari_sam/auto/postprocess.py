"""Small holes and small islands of a mask removed, as Segment Anything's ``min_mask_region_area`` does.

A hole is a connected piece of background (8-connected) and an island a
connected piece of the mask; pieces smaller than the area are filled or
removed. When every island is small, the largest one stays. The work is
done on the mask's bounding box plus a one-pixel margin: pieces inside it
are exactly the whole plane's, and the background piece that reaches the
margin continues outside the box, so it is never a small hole (if the box
holds fewer pixels than the area, the whole plane is looked at instead).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


def remove_small_regions(mask: np.ndarray, min_area: int, mode: str) -> tuple[np.ndarray, bool]:
    """``(mask, changed)`` with holes (``mode="holes"``) or islands (``"islands"``) below ``min_area`` removed."""
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return _whole_plane(mask, min_area, mode)
    cols = np.flatnonzero(mask.any(axis=0))
    H, W = mask.shape
    y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, H)
    x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, W)
    window = mask[y0:y1, x0:x1]
    if mode == "holes":
        pieces, n = ndimage.label(~window, structure=_EIGHT)
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
        edge = np.unique(np.concatenate([pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]]))
        edge = edge[edge > 0] - 1
        if edge.size and sizes[edge].min() < min_area:
            return _whole_plane(mask, min_area, mode)  # its true size lies partly outside the window
        sizes[edge] = np.iinfo(sizes.dtype).max
        small = np.flatnonzero(sizes < min_area) + 1
        if small.size == 0:
            return mask, False
        out = mask.copy()
        out[y0:y1, x0:x1] |= np.isin(pieces, small)
        return out, True
    pieces, n = ndimage.label(window, structure=_EIGHT)
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
    small = sizes < min_area
    if not small.any():
        return mask, False
    kept = np.flatnonzero(~small) + 1
    if kept.size == 0:
        kept = np.array([int(np.argmax(sizes)) + 1])
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = np.isin(pieces, kept)
    return out, True


def _whole_plane(mask: np.ndarray, min_area: int, mode: str) -> tuple[np.ndarray, bool]:
    holes = mode == "holes"
    pieces, n = ndimage.label(~mask if holes else mask, structure=_EIGHT)
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < min_area) + 1
    if small.size == 0:
        return mask, False
    if holes:
        return mask | np.isin(pieces, small), True
    kept = np.setdiff1d(np.arange(1, n + 1), small)
    if kept.size == 0:
        kept = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(pieces, kept), True
