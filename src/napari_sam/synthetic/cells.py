"""Three-colour images of cultured cells (membrane, cytoplasm, nucleus) with whole-cell labels."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

from .checks import (
    _as_rng,
    _check_count,
    _check_dtype,
    _check_imaging,
    _check_number,
    _check_pair,
    _check_shape,
)
from .imaging import _acquire, _illumination, _object_signal, _to_dtype
from .shapes import (
    _normalised_distance,
    _paint_labels,
    _place_objects,
    _rotation_2d,
    _sample_ellipse,
    _shape_matrix,
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
