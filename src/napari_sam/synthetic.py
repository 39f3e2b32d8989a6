"""Synthetic fluorescence images of nuclei and cells, with their true instance labels.

They train and check the small demo model, serve as napari sample data and as
test fixtures. Only numpy, scipy and scikit-image are used here (no napari, Qt
or torch), so the generator also runs in data-loader workers and headless CI.

The recipe follows how a fluorescence image comes about:

1. Ellipses (2D) or ellipsoids (3D) of varied size, elongation and orientation
   are placed either on their own or pressed against a neighbour.
2. Where two objects overlap, a pixel goes to the object it is closest to
   *relative to that object's size*; this gives touching nuclei the flat shared
   border they have in real tissue. Objects left mostly hidden are dropped, stray
   fragments are removed so that every label is one connected piece, and labels
   are renumbered 1..N.
3. Each object gets its own brightness, a chromatin-like texture and a dimmer rim.
4. The optics blur it (a Gaussian PSF, longer along z in 3D); a background offset
   and a slow illumination gradient are added; then photon (Poisson) noise and
   camera read (Gaussian) noise.
5. The relative intensities are scaled to the requested dtype: uint8 0..255,
   uint16 like a 12-bit camera (offset 100, at most 4095) or float32 0..1.

Same seed, same arguments: identical output.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from numbers import Integral, Real

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

__all__ = [
    "SUPPORTED_DTYPES",
    "make_nuclei_2d",
    "make_nuclei_3d",
    "make_cells_2d",
    "iter_training_pairs",
]

SUPPORTED_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

# uint16 output imitates a 12-bit scientific camera: a dark offset so that noise
# never clips at zero, and a full well below 4095.
_CAMERA_OFFSET = 100
_CAMERA_GAIN = 3800  # grey levels per unit of relative intensity
_CAMERA_MAX = 4095

# The PSF of a widefield/confocal microscope is about three times longer along
# the optical axis than across it.
_AXIAL_BLUR_FACTOR = 3.0

# An object is kept only if at least this share of its in-frame area is still its own.
_MIN_VISIBLE_FRACTION = 0.5

# Placement: how many candidate positions are tried per object, the free margin
# (in pixels) between objects placed "on their own", and how far touching
# objects may be pushed into each other (as a fraction of their summed radii).
_PLACEMENT_TRIES = 64
_SEPARATE_GAP = 2.0
_TOUCH_DEPTH = (0.75, 0.95)
_MAX_OVERLAP = 0.7


# --------------------------------------------------------------------------- checks


def _check_shape(shape, ndim: int) -> tuple[int, ...]:
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence):
        raise TypeError(f"shape must be a tuple of {ndim} integers, got {shape!r}")
    if len(shape) != ndim:
        raise ValueError(f"shape must have {ndim} entries for a {ndim}D image, got {tuple(shape)!r}")
    for s in shape:
        if isinstance(s, bool) or not isinstance(s, Integral):
            raise TypeError(f"shape entries must be integers, got {tuple(shape)!r}")
        if s <= 0:
            raise ValueError(f"shape entries must be positive, got {tuple(shape)!r}")
    return tuple(int(s) for s in shape)


def _check_count(n_objects) -> tuple[int, int]:
    """Return the inclusive (low, high) range of the number of objects."""
    def as_count(v):
        if isinstance(v, bool) or not isinstance(v, Integral):
            raise TypeError(f"n_objects must be an integer or a (min, max) pair of integers, got {n_objects!r}")
        if v < 0:
            raise ValueError(f"n_objects must not be negative, got {n_objects!r}")
        return int(v)

    if isinstance(n_objects, Sequence) and not isinstance(n_objects, (str, bytes)):
        if len(n_objects) != 2:
            raise ValueError(f"n_objects as a range must be a (min, max) pair, got {n_objects!r}")
        low, high = as_count(n_objects[0]), as_count(n_objects[1])
        if low > high:
            raise ValueError(f"n_objects range must have min <= max, got {n_objects!r}")
        return low, high
    n = as_count(n_objects)
    return n, n


def _check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype {dtype!r} is not a numpy dtype") from err
    if dt not in SUPPORTED_DTYPES:
        names = ", ".join(d.name for d in SUPPORTED_DTYPES)
        raise ValueError(f"dtype must be one of {names}, got {dt.name}")
    return dt


def _check_number(name: str, value, low: float, high: float = np.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    if not np.isfinite(value) or too_low or value > high:
        bound = f"{'>' if low_open else '>='} {low}" + ("" if high == np.inf else f" and <= {high}")
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return value


def _check_pair(name: str, pair, low: float, high: float = np.inf) -> tuple[float, float]:
    """A (min, max) pair with low < min <= max <= high."""
    if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
        raise TypeError(f"{name} must be a (min, max) pair of numbers, got {pair!r}")
    a = _check_number(name, pair[0], low, high, low_open=True)
    b = _check_number(name, pair[1], low, high, low_open=True)
    if a > b:
        raise ValueError(f"{name} must have min <= max, got {pair!r}")
    return a, b


def _as_rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, Integral)):
        raise TypeError(f"seed must be None, an integer or a numpy Generator, got {seed!r}")
    return np.random.default_rng(seed)


def _check_imaging(blur_sigma, texture, background, gradient, photons, read_noise) -> None:
    _check_number("blur_sigma", blur_sigma, 0.0)
    _check_number("texture", texture, 0.0, 1.0)
    _check_number("background", background, 0.0, 1.0)
    _check_number("gradient", gradient, 0.0, 1.0)
    _check_number("photons", photons, 0.0, low_open=True)
    _check_number("read_noise", read_noise, 0.0)


# ------------------------------------------------------------------------ geometry


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


# ------------------------------------------------------------------------- imaging


def _smooth_noise(rng, shape, sigma):
    """Gaussian-correlated noise with unit standard deviation (texture, blotches)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma, mode="wrap")
    std = float(field.std())
    return field / std if std > 0 else field


def _object_signal(rng, labels, d2_map, brightness, texture, texture_sigma, rim=0.3):
    """Bright objects with a dimmer rim and a mottled, chromatin-like interior."""
    inside = labels > 0
    signal = brightness[labels] * (1.0 - rim * np.where(inside, d2_map, 1.0))
    if texture > 0:
        signal *= np.clip(1.0 + texture * _smooth_noise(rng, labels.shape, texture_sigma), 0.0, None)
    return np.where(inside, signal, 0.0).astype(np.float32)


def _illumination(rng, shape, background, gradient):
    """Background offset plus a linear ramp across the field (uneven illumination)."""
    angle = rng.uniform(0.0, 2 * np.pi)
    y = np.linspace(-0.5, 0.5, shape[-2], dtype=np.float32)[:, None]
    x = np.linspace(-0.5, 0.5, shape[-1], dtype=np.float32)[None, :]
    plane = background + gradient * (np.sin(angle) * y + np.cos(angle) * x)
    return np.clip(plane, 0.0, None).astype(np.float32)


def _acquire(rng, relative, photons, read_noise, noise):
    """Photon shot noise and camera read noise, in relative-intensity units."""
    if not noise:
        return relative
    counts = rng.poisson(np.clip(relative, 0.0, None) * photons).astype(np.float32)
    if read_noise > 0:
        counts += np.float32(read_noise) * rng.standard_normal(relative.shape, dtype=np.float32)
    return counts / np.float32(photons)


def _to_dtype(relative, dtype):
    if dtype == np.uint8:
        return np.clip(np.rint(relative * 255.0), 0, 255).astype(np.uint8)
    if dtype == np.uint16:
        grey = np.rint(_CAMERA_OFFSET + relative * _CAMERA_GAIN)
        return np.clip(grey, 0, _CAMERA_MAX).astype(np.uint16)
    return np.clip(relative, 0.0, 1.0).astype(np.float32)


def _blur_sigma(blur_sigma, spacing):
    """Per-axis Gaussian sigma in pixels; along z the PSF is longer and slices are sparser."""
    if len(spacing) == 2:
        return (blur_sigma, blur_sigma)
    return (blur_sigma * _AXIAL_BLUR_FACTOR / spacing[0], blur_sigma, blur_sigma)


# ---------------------------------------------------------------------- generators


def _make_nuclei(shape, n_objects, seed, dtype, spacing, sample, min_size, brightness_range, *,
                 touching, texture, blur_sigma, background, gradient, photons, read_noise, noise):
    rng = _as_rng(seed)
    low, high = _check_count(n_objects)
    n = int(rng.integers(low, high + 1))
    extent = (np.asarray(shape) - 1) * np.asarray(spacing)
    centres, matrices = _place_objects(rng, n, extent, sample, touching)
    labels, d2_map, kept = _paint_labels(shape, spacing, centres, matrices, min_size)

    brightness = np.zeros(len(kept) + 1, np.float32)
    brightness[1:] = rng.uniform(*brightness_range, len(kept))
    texture_sigma = tuple(1.5 / s for s in spacing)
    signal = _object_signal(rng, labels, d2_map, brightness, texture, texture_sigma)
    if blur_sigma > 0:
        signal = ndimage.gaussian_filter(signal, _blur_sigma(blur_sigma, spacing), mode="nearest", truncate=3.0)
    signal += _illumination(rng, shape, background, gradient)
    image = _to_dtype(_acquire(rng, signal, photons, read_noise, noise), dtype)
    return image, labels


def make_nuclei_2d(
    shape=(256, 256),
    n_objects=(5, 25),
    seed=None,
    dtype=np.uint8,
    *,
    radius_range=(6.0, 30.0),
    aspect_range=(0.55, 1.0),
    touching=0.3,
    brightness_range=(0.3, 0.8),
    texture=0.15,
    blur_sigma=1.0,
    background=0.08,
    gradient=0.06,
    photons=300.0,
    read_noise=2.0,
    noise=True,
):
    """A 2D fluorescence-like image of nuclei and its instance labels.

    Parameters
    ----------
    shape : (rows, columns)
    n_objects : int or (min, max)
        How many nuclei to try to place (a range is sampled inclusively). Crowded
        settings, or nuclei hidden behind others, can leave fewer.
    seed : None, int or numpy Generator
        The same integer seed gives identical output.
    dtype : uint8, uint16 or float32
        uint8 spans 0..255, uint16 a 12-bit camera (offset 100, max 4095),
        float32 0..1.
    radius_range : (min, max)
        Semi-axis lengths in pixels; both semi-axes of every nucleus lie in it.
    aspect_range : (min, max)
        Ratio of short to long semi-axis before clipping to ``radius_range``.
    touching : float in [0, 1]
        Chance that a nucleus is pressed against an already placed one; with 0
        all nuclei are apart by at least two background pixels.
    brightness_range : (min, max)
        Per-nucleus brightness in relative units (1.0 is full scale).
    texture : float in [0, 1]
        Strength of the mottled interior.
    blur_sigma : float
        PSF standard deviation in pixels (0 for none).
    background, gradient : float
        Background offset and the ramp of uneven illumination across the field,
        in relative units.
    photons : float
        Photons collected at relative intensity 1.0; fewer means noisier.
    read_noise : float
        Camera read noise, in photons.
    noise : bool
        False gives the clean, blurred image.

    Returns
    -------
    image : (rows, columns) array of ``dtype``
    labels : (rows, columns) uint32 array, 0 background, nuclei 1..N, each label
        a single connected piece.
    """
    shape = _check_shape(shape, 2)
    dtype = _check_dtype(dtype)
    radius_range = _check_pair("radius_range", radius_range, 0.0)
    aspect_range = _check_pair("aspect_range", aspect_range, 0.0, 1.0)
    brightness_range = _check_pair("brightness_range", brightness_range, 0.0, 1.0)
    _check_number("touching", touching, 0.0, 1.0)
    _check_imaging(blur_sigma, texture, background, gradient, photons, read_noise)
    # Slivers at the border smaller than a quarter of the smallest nucleus are not worth a label.
    min_size = max(8, int(0.25 * np.pi * radius_range[0] ** 2))
    return _make_nuclei(
        shape, n_objects, seed, dtype, (1.0, 1.0),
        lambda rng: _sample_ellipse(rng, radius_range, aspect_range), min_size, brightness_range,
        touching=touching, texture=texture, blur_sigma=blur_sigma, background=background,
        gradient=gradient, photons=photons, read_noise=read_noise, noise=noise,
    )


def make_nuclei_3d(
    shape=(32, 256, 256),
    n_objects=(10, 40),
    seed=None,
    dtype=np.uint8,
    *,
    z_step=2.0,
    radius_range=(6.0, 20.0),
    aspect_range=(0.55, 1.0),
    touching=0.3,
    brightness_range=(0.3, 0.8),
    texture=0.15,
    blur_sigma=1.0,
    background=0.08,
    gradient=0.06,
    photons=300.0,
    read_noise=2.0,
    noise=True,
):
    """A 3D fluorescence-like stack of nuclei and its instance labels.

    Same parameters as :func:`make_nuclei_2d`, with:

    shape : (planes, rows, columns)
    z_step : float
        Distance between planes in units of the pixel size (the voxel is
        ``z_step`` times deeper than wide). Nuclei are round in physical space,
        so they span about ``2 * radius / z_step`` planes, and the PSF is
        three times longer along z than across.
    radius_range : (min, max)
        Semi-axis lengths in pixel-size units.

    Returns
    -------
    stack : (planes, rows, columns) array of ``dtype``
    labels : uint32 array of the same shape, each label one connected piece
        (face connectivity).
    """
    shape = _check_shape(shape, 3)
    dtype = _check_dtype(dtype)
    z_step = _check_number("z_step", z_step, 0.0, low_open=True)
    radius_range = _check_pair("radius_range", radius_range, 0.0)
    aspect_range = _check_pair("aspect_range", aspect_range, 0.0, 1.0)
    brightness_range = _check_pair("brightness_range", brightness_range, 0.0, 1.0)
    _check_number("touching", touching, 0.0, 1.0)
    _check_imaging(blur_sigma, texture, background, gradient, photons, read_noise)
    min_size = max(8, int(0.25 * 4.0 / 3.0 * np.pi * radius_range[0] ** 3 / z_step))
    return _make_nuclei(
        shape, n_objects, seed, dtype, (z_step, 1.0, 1.0),
        lambda rng: _sample_ellipsoid(rng, radius_range, aspect_range), min_size, brightness_range,
        touching=touching, texture=texture, blur_sigma=blur_sigma, background=background,
        gradient=gradient, photons=photons, read_noise=read_noise, noise=noise,
    )


def make_cells_2d(
    shape=(256, 256),
    n_objects=(6, 16),
    seed=None,
    dtype=np.uint8,
    *,
    radius_range=(14.0, 36.0),
    aspect_range=(0.5, 1.0),
    touching=0.6,
    blur_sigma=1.0,
    background=0.06,
    gradient=0.05,
    photons=300.0,
    read_noise=2.0,
    noise=True,
):
    """A 2D three-colour image of cultured cells and its whole-cell labels.

    Channels (last axis, RGB order): red a membrane stain, green a cytoplasm
    stain, blue a nuclear stain. Each cell holds one nucleus. Cells often touch,
    as in a sub-confluent culture.

    Parameters are as in :func:`make_nuclei_2d`; ``radius_range`` and
    ``n_objects`` refer to whole cells.

    Returns
    -------
    image : (rows, columns, 3) array of ``dtype``
    labels : (rows, columns) uint32 array of cells 1..N, each one connected piece.
    """
    shape = _check_shape(shape, 2)
    dtype = _check_dtype(dtype)
    radius_range = _check_pair("radius_range", radius_range, 0.0)
    aspect_range = _check_pair("aspect_range", aspect_range, 0.0, 1.0)
    _check_number("touching", touching, 0.0, 1.0)
    _check_imaging(blur_sigma, 0.0, background, gradient, photons, read_noise)
    rng = _as_rng(seed)
    low, high = _check_count(n_objects)
    n = int(rng.integers(low, high + 1))

    extent = np.asarray(shape, float) - 1
    centres, matrices = _place_objects(
        rng, n, extent, lambda r: _sample_ellipse(r, radius_range, aspect_range), touching
    )
    min_size = max(8, int(0.25 * np.pi * radius_range[0] ** 2))
    labels, cell_d2, kept = _paint_labels(shape, (1.0, 1.0), centres, matrices, min_size)

    # One nucleus per cell, off-centre but inside: its offset (<= 0.25) plus its
    # longest semi-axis (<= 0.5) stay below the cell's shortest semi-axis.
    nucleus_d2 = np.full(shape, np.inf, np.float32)
    for label, index in enumerate(kept, start=1):
        shortest = 1.0 / np.sqrt(np.linalg.eigvalsh(matrices[index]).max())
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction)
        centre = centres[index] + direction * rng.uniform(0.0, 0.25) * shortest
        semi_axes = shortest * np.sort(rng.uniform(0.35, 0.5, 2))[::-1]
        nucleus = _shape_matrix(semi_axes, _rotation_2d(rng.uniform(0.0, np.pi)))
        found = _normalised_distance(centre, nucleus, shape, (1.0, 1.0))
        if found is None:
            continue
        box, d2 = found
        mine = (d2 <= 1.0) & (labels[box] == label)
        nucleus_d2[box][mine] = d2[mine]
    in_nucleus = np.isfinite(nucleus_d2)

    n_cells = len(kept)
    nucleus_labels = np.where(in_nucleus, labels, 0)
    nuclear = _object_signal(
        rng, nucleus_labels, nucleus_d2, _per_cell(rng, n_cells, 0.35, 0.8), 0.15, 1.5
    )
    # Cytoplasm: brighter towards the cortex, finely fibrous, mostly excluded from the nucleus.
    cytoplasm = _object_signal(rng, labels, cell_d2, _per_cell(rng, n_cells, 0.15, 0.4), 0.3, 1.0, rim=-0.5)
    cytoplasm[in_nucleus] *= 0.4
    membrane = find_boundaries(labels, mode="inner").astype(np.float32)
    membrane *= _per_cell(rng, n_cells, 0.25, 0.5)[labels]

    offsets = background * np.array([0.8, 1.0, 1.2], np.float32)
    illumination = _illumination(rng, shape, 0.0, gradient)
    channels = []
    for signal, offset in zip((membrane, cytoplasm, nuclear), offsets):
        if blur_sigma > 0:
            signal = ndimage.gaussian_filter(signal, blur_sigma, mode="nearest", truncate=3.0)
        signal = signal + illumination + offset
        channels.append(_to_dtype(_acquire(rng, signal, photons, read_noise, noise), dtype))
    return np.stack(channels, axis=-1), labels


def _per_cell(rng, n, low, high):
    """Per-label values with 0 for the background, indexable by a label image."""
    values = np.zeros(n + 1, np.float32)
    values[1:] = rng.uniform(low, high, n)
    return values


def iter_training_pairs(
    seed=None,
    size=256,
    dtypes=SUPPORTED_DTYPES,
    *,
    n_objects=(3, 25),
    radius_range=(6.0, 30.0),
    cells_fraction=0.0,
    count=None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream of 2D (image, labels) pairs under varied imaging conditions, for training.

    Each pair draws its dtype from ``dtypes`` and its own blur, noise level,
    background, texture and crowding, so a model does not learn one camera.
    With ``cells_fraction`` > 0 that share of the pairs are RGB cell images
    (see :func:`make_cells_2d`) instead of single-channel nuclei.

    Parameters
    ----------
    seed : None or int
        The same seed gives the same stream.
    size : int or (rows, columns)
    dtypes : sequence of uint8 / uint16 / float32
    count : None or int
        Number of pairs; None streams forever.
    """
    rng = _as_rng(seed)
    shape = _check_shape((size, size) if isinstance(size, Integral) and not isinstance(size, bool) else size, 2)
    if isinstance(dtypes, (str, bytes)) or not isinstance(dtypes, Sequence) or len(dtypes) == 0:
        raise ValueError(f"dtypes must be a non-empty sequence of dtypes, got {dtypes!r}")
    dtypes = [_check_dtype(d) for d in dtypes]
    n_objects_low, n_objects_high = _check_count(n_objects)
    # Cells are bigger than nuclei and fewer fit in a field.
    radius_range = _check_pair("radius_range", radius_range, 0.0)
    cell_radii = (radius_range[0] * 2.0, radius_range[1] * 1.2)
    cell_count = (max(1, n_objects_low // 2), max(1, n_objects_high // 2))
    _check_number("cells_fraction", cells_fraction, 0.0, 1.0)
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, Integral) or count < 0:
            raise ValueError(f"count must be None or a non-negative integer, got {count!r}")

    def stream():
        produced = 0
        while count is None or produced < count:
            dtype = dtypes[int(rng.integers(len(dtypes)))]
            imaging = dict(
                blur_sigma=rng.uniform(0.5, 2.0),
                photons=float(np.exp(rng.uniform(np.log(30.0), np.log(2000.0)))),
                background=rng.uniform(0.02, 0.2),
                gradient=rng.uniform(0.0, 0.12),
                touching=rng.uniform(0.0, 0.7),
            )
            pair_seed = int(rng.integers(2**63))
            if rng.random() < cells_fraction:
                yield make_cells_2d(shape, cell_count, pair_seed, dtype, radius_range=cell_radii, **imaging)
            else:
                yield make_nuclei_2d(shape, n_objects, pair_seed, dtype, radius_range=radius_range,
                                     texture=rng.uniform(0.0, 0.3), **imaging)
            produced += 1

    return stream()
