"""Fluorescence images of nuclei, 2D and 3D, with their instance labels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .checks import (
    _as_rng,
    _check_count,
    _check_dtype,
    _check_imaging,
    _check_number,
    _check_pair,
    _check_shape,
)
from .imaging import _acquire, _blur_sigma, _illumination, _object_signal, _to_dtype
from .shapes import _paint_labels, _place_objects, _sample_ellipse, _sample_ellipsoid


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
