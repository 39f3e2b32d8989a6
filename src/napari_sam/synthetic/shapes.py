"""Where the objects sit and what shape they have, and the instance labels painted from them.

Nuclei are ellipses (2D) or ellipsoids (3D) of varied size, elongation and
orientation, placed on their own or pressed against a neighbour. Where two
overlap, a pixel goes to the object it is closest to relative to that object's
size, which gives touching nuclei a flat shared border.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# An object is kept only if at least this share of its in-frame area is still its own.
_MIN_VISIBLE_FRACTION = 0.5

# Placement: how many candidate positions are tried per object, the free margin
# (in pixels) between objects placed "on their own", and how far touching
# objects may be pushed into each other (as a fraction of their summed radii).
_PLACEMENT_TRIES = 64
_SEPARATE_GAP = 2.0
_TOUCH_DEPTH = (0.75, 0.95)
_MAX_OVERLAP = 0.7


def _rotation_2d(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _sample_ellipse(rng, radius_range, aspect_range):
    # Log-uniform sizes: many small nuclei, a few big ones, as in real samples.
    a = np.exp(rng.uniform(np.log(radius_range[0]), np.log(radius_range[1])))
    b = max(a * rng.uniform(*aspect_range), radius_range[0])
    return np.array([a, b]), _rotation_2d(rng.uniform(0.0, np.pi))


def _sample_ellipsoid(rng, radius_range, aspect_range, max_tilt=0.4):
    a = np.exp(rng.uniform(np.log(radius_range[0]), np.log(radius_range[1])))
    b = max(a * rng.uniform(*aspect_range), radius_range[0])
    # Nuclei of cells grown on glass are somewhat flattened along the optical axis.
    c = max(np.sqrt(a * b) * rng.uniform(0.6, 1.0), radius_range[0])
    theta, tilt = rng.uniform(0.0, np.pi), rng.uniform(-max_tilt, max_tilt)
    # Axis order is (z, y, x): turn within the y-x plane, after tilting out of it.
    in_plane = np.eye(3)
    in_plane[1:, 1:] = _rotation_2d(theta)
    out_of_plane = np.eye(3)
    out_of_plane[:2, :2] = _rotation_2d(tilt)
    return np.array([c, a, b]), in_plane @ out_of_plane


def _shape_matrix(semi_axes, rotation):
    """M such that x^T M x <= 1 is the ellipsoid around the origin."""
    return rotation @ np.diag(1.0 / np.asarray(semi_axes) ** 2) @ rotation.T


def _radius_along(matrices, directions):
    """Distance from centre to surface along unit `directions` (broadcast over leading axes)."""
    q = np.einsum("...i,...ij,...j->...", directions, matrices, directions)
    return 1.0 / np.sqrt(q)


def _place_objects(rng, n, extent, sample, touching):
    """Choose centres for up to `n` objects inside a box of physical size `extent`.

    Each object is either set apart from all others, with a margin, or (with
    probability `touching`) pushed against a chosen neighbour. Returns lists of
    centres and shape matrices; crowded settings may yield fewer than `n`.
    """
    ndim = len(extent)
    extent = np.asarray(extent, float)
    centres, matrices, reaches = [], [], []
    for _ in range(n):
        semi_axes, rotation = sample(rng)
        m = _shape_matrix(semi_axes, rotation)
        reach = float(np.max(semi_axes))
        candidates = rng.uniform(0.0, 1.0, (_PLACEMENT_TRIES, ndim)) * extent
        if not centres:
            centres.append(candidates[0])
            matrices.append(m)
            reaches.append(reach)
            continue
        c_all, m_all, r_all = np.array(centres), np.array(matrices), np.array(reaches)

        # Touching candidates sit just inside the partner's surface along a random direction.
        touch = rng.random(_PLACEMENT_TRIES) < touching
        partner = rng.integers(len(centres), size=_PLACEMENT_TRIES)
        direction = rng.normal(size=(_PLACEMENT_TRIES, ndim))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        gap = (_radius_along(m_all[partner], direction) + _radius_along(m, direction)) * rng.uniform(
            *_TOUCH_DEPTH, _PLACEMENT_TRIES
        )
        candidates = np.where(touch[:, None], c_all[partner] + direction * gap[:, None], candidates)

        in_frame = np.all((candidates >= 0.0) & (candidates <= extent), axis=1)
        offset = candidates[:, None, :] - c_all[None]  # (tries, existing, ndim)
        dist = np.linalg.norm(offset, axis=-1)
        unit = offset / np.maximum(dist, 1e-9)[..., None]
        # Bounding spheres apart: guaranteed not to touch, whatever the orientation.
        apart = np.all(dist >= r_all[None] + reach + _SEPARATE_GAP, axis=1)
        # Touching is fine, swallowing one another is not.
        summed = _radius_along(m_all[None], unit) + _radius_along(m, unit)
        shallow = np.all(dist >= _MAX_OVERLAP * summed, axis=1)
        ok = in_frame & np.where(touch, shallow, apart)
        if ok.any():
            centres.append(candidates[np.argmax(ok)])
            matrices.append(m)
            reaches.append(reach)
    return centres, matrices


def _normalised_distance(centre, matrix, shape, spacing):
    """Squared size-relative distance to the object over its bounding box.

    Returns (box slices, d2) or None when the object lies outside the frame.
    Values <= 1 are inside the object.
    """
    spacing = np.asarray(spacing, float)
    half = np.sqrt(np.diag(np.linalg.inv(matrix)))  # bounding-box half size
    lo = np.maximum(np.floor((centre - half) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil((centre + half) / spacing).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    grids = np.ogrid[box]
    offs = [(g * s - c).astype(np.float32) for g, s, c in zip(grids, spacing, centre)]
    d2 = np.zeros(tuple(hi - lo), np.float32)
    for i in range(len(offs)):
        d2 += np.float32(matrix[i, i]) * offs[i] ** 2
        for j in range(i + 1, len(offs)):
            d2 += np.float32(2.0 * matrix[i, j]) * offs[i] * offs[j]
    return box, d2


def _paint_labels(shape, spacing, centres, matrices, min_size):
    """Rasterise the objects into instance labels.

    Returns (labels uint32 1..N, d2 float32 with each pixel's size-relative
    distance to its object's centre, inf on background, kept) where `kept[k]` is
    the index into `centres` of label k + 1.
    """
    labels = np.zeros(shape, np.int32)
    d2_map = np.full(shape, np.inf, np.float32)
    in_frame_size = []
    for idx, (centre, matrix) in enumerate(zip(centres, matrices), start=1):
        found = _normalised_distance(centre, matrix, shape, spacing)
        if found is None:
            in_frame_size.append(0)
            continue
        box, d2 = found
        inside = d2 <= 1.0
        in_frame_size.append(int(inside.sum()))
        wins = inside & (d2 < d2_map[box])
        labels[box][wins] = idx
        d2_map[box][wins] = d2[wins]

    kept = []
    for idx, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        own = labels[box] == idx
        pieces, n_pieces = ndimage.label(own)
        if n_pieces > 1:
            # A neighbour cut this object in two: keep its largest piece only.
            largest = np.argmax(np.bincount(pieces.ravel())[1:]) + 1
            labels[box][own & (pieces != largest)] = 0
            own = pieces == largest
        size = int(own.sum())
        if size < min_size or size < _MIN_VISIBLE_FRACTION * in_frame_size[idx - 1]:
            labels[box][own] = 0
        else:
            kept.append(idx - 1)

    lookup = np.zeros(len(centres) + 1, np.uint32)
    lookup[np.array(kept, int) + 1] = np.arange(1, len(kept) + 1, dtype=np.uint32)
    labels = lookup[labels]
    d2_map[labels == 0] = np.inf
    return labels, d2_map, kept
