"""How convex a candidate mask is: its pixels over the pixels of its convex hull (solidity).

Nuclei are nearly convex; a mask holding two touching nuclei is not (a notch
where they meet). Where such a merged mask is more stable than the mask of
one of its nuclei, box NMS by stability keeps the merge and drops the
nucleus; the ``nms_convexity`` setting lowers each candidate's NMS score by
``nms_convexity * (1 - solidity)`` so that the convex one wins
(:func:`napari_sam.auto.generator._select_in_crop`).

The hull is that of the pixel centres, and a pixel belongs to it when its
centre does: a digital convex shape (a disc, a box) then has solidity 1 at
any size, so the score does not favour large or small masks.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from . import rle

#: A pixel centre this close outside a hull edge still counts as inside (rounding of the hull's planes).
EPS = 1e-9


def solidity(mask: np.ndarray) -> float:
    """Pixels of the bool ``mask`` over the pixels whose centres lie in the hull of its pixel centres.

    1.0 for an empty mask, and for one whose pixels lie on one line (its hull has no area).
    """
    ys, xs = np.nonzero(mask)
    if len(ys) < 3:
        return 1.0
    points = np.stack([xs, ys], axis=1).astype(np.float64)
    try:
        hull = ConvexHull(points)
    except QhullError:  # all on one line: the mask is its own hull
        return 1.0
    # every pixel centre of the mask's bounding box, tested against the hull's edges (a x + b y + c <= 0)
    gy, gx = np.mgrid[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    centres = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float64)
    inside = np.all(centres @ hull.equations[:, :2].T + hull.equations[:, 2] <= EPS, axis=1)
    return float(len(ys) / max(int(inside.sum()), len(ys)))


def solidities(crop, which: np.ndarray) -> np.ndarray:
    """:func:`solidity` of the crop's candidates ``which`` (decoded from their run lengths one at a time)."""
    out = np.ones(len(which), np.float64)
    for k, i in enumerate(which):
        x0, y0, x1, y1 = (int(v) for v in crop.boxes[i])
        mask = rle.decode(crop.rles[i], crop.image_hw)[y0 : y1 + 1, x0 : x1 + 1]  # the box is inclusive
        out[k] = solidity(mask)
    return out
