"""The prompt for the next slice, derived from the masks found on the slices before.

Parts (any combination, named in ``use``):

* ``"box"``: the box around the previous mask, slightly enlarged, as the object may grow;
* ``"point"``: a positive point at the mask's most interior pixel (the maximum of its
  distance transform, which lies inside the object even when it is curved);
* ``"points"``: up to three positive points at the distance transform's separate maxima,
  so a long or bent object is held at both ends;
* ``"mask"``: the model's low-resolution logits of the previous slice;
* ``"negatives"``: a negative point inside each other object near the box (committed
  labels, or the other objects of one "Propagate all"), on this slice and on the slice
  before, so the mask does not bleed into them; the negative points of the step before
  are carried on while they stay outside the object (a neighbour stays a neighbour, even
  on slices where nobody has segmented it yet).

The *expected* mask, the previous one grown or shrunk as the last two slices
changed, rides along: it is what the candidates are compared with when the
model is asked for three (``pick="shape"``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max

from ...geometry import interior_point, mask_box
from .slices import SlicePrompt

PROMPT_PARTS = ("box", "point", "points", "mask", "negatives")
DEFAULT_PROMPT = ("box", "point")
MAX_NEGATIVES = 6


def prompt_from_mask(
    mask: np.ndarray,
    low_res: np.ndarray | None = None,
    use: Iterable[str] = DEFAULT_PROMPT,
    box_margin: float = 0.1,
    *,
    others: Iterable[np.ndarray] = (),
    before: np.ndarray | None = None,
    carried: Iterable[tuple[float, float]] = (),
) -> SlicePrompt:
    """The prompt for the next slice from this slice's mask (``before``: the mask of the slice before it)."""
    use = set(use)
    box = mask_box(mask, box_margin) if "box" in use else None
    points: list[tuple[float, float]] = []
    labels: list[int] = []
    if "points" in use:
        points += _interior_maxima(mask)
    elif "point" in use:
        points.append(interior_point(mask))
    labels += [1] * len(points)
    if "negatives" in use:
        negatives = _negatives(mask, others, carried, mask_box(mask, max(box_margin, 0.25)))
        points += negatives
        labels += [0] * len(negatives)
    mask_input = low_res if "mask" in use and low_res is not None else None
    return SlicePrompt(
        previous_mask=mask,
        box=box,
        points=np.array(points, dtype=np.float64) if points else None,
        point_labels=np.array(labels, dtype=np.int64) if points else None,
        mask_input=mask_input,
        expected_mask=expected_mask(mask, before),
    )


def _interior_maxima(mask: np.ndarray, n: int = 3) -> list[tuple[float, float]]:
    """(x, y) of up to ``n`` separate maxima of the distance to the mask's edge, the deepest first."""
    dist = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    spacing = max(2, int(dist.max()))  # maxima closer than the object's half-width are one
    peaks = peak_local_max(dist, min_distance=spacing, num_peaks=n, exclude_border=False)
    if len(peaks) == 0:
        return [interior_point(mask)]
    return [(float(c), float(r)) for r, c in peaks]


def _negatives(mask, others, carried, box) -> list[tuple[float, float]]:
    """Negative points: on the other objects near ``box`` (each plane of ``others``), then the carried ones,
    leaving out any inside the object's mask and any in the same pixel twice."""
    found = []
    for plane in others:
        if plane is not None:
            found += _points_on_neighbours(plane, box)
    found += list(carried)
    h, w = mask.shape
    seen, out = set(), []
    for x, y in found:
        pixel = (int(round(y)), int(round(x)))
        inside = 0 <= pixel[0] < h and 0 <= pixel[1] < w
        if inside and not mask[pixel] and pixel not in seen:
            seen.add(pixel)
            out.append((float(x), float(y)))
    return out[:MAX_NEGATIVES]


def _points_on_neighbours(others: np.ndarray, box: np.ndarray) -> list[tuple[float, float]]:
    """A point inside each other object reaching into ``box``, the largest first."""
    h, w = others.shape
    x0, y0, x1, y1 = (int(v) for v in (np.floor(box[0]), np.floor(box[1]), np.ceil(box[2]), np.ceil(box[3])))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    window = others[y0:y1, x0:x1]
    ids, counts = np.unique(window[window > 0], return_counts=True)
    points = []
    for oid in ids[np.argsort(-counts)][:MAX_NEGATIVES]:
        x, y = interior_point(window == oid)
        points.append((x + x0, y + y0))
    return points


def expected_mask(mask: np.ndarray, before: np.ndarray | None) -> np.ndarray:
    """``mask`` grown or shrunk by as many pixels as the object's radius changed from ``before`` to ``mask``."""
    if before is None or not before.any() or not mask.any():
        return mask
    radius, radius_before = np.sqrt(np.count_nonzero(mask) / np.pi), np.sqrt(np.count_nonzero(before) / np.pi)
    step = int(round(np.clip(radius - radius_before, -radius / 2, radius / 2)))
    if step > 0:
        return ndimage.binary_dilation(mask, iterations=step)
    if step < 0:
        shrunk = ndimage.binary_erosion(mask, iterations=-step)
        return shrunk if shrunk.any() else mask
    return mask
