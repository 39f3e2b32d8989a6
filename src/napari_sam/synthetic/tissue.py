"""Patches of epithelial tissue: irregular touching cells with bright borders and textured, dim interiors.

A domain the demo model never saw: its training images hold bright, rounded
nuclei on a dark background, here an object is a dim, mottled region *enclosed*
by a bright membrane it shares with its neighbours, as in a membrane stain
(e.g. E-cadherin or a cell-mask dye) of an epithelial sheet. The benchmark of the
data engine (benchmarks/bench_data_engine.py) fine-tunes on it.

The recipe:

1. Cell centres are thrown at random, at least a minimum spacing apart.
2. Each pixel goes to its nearest centre, measured on coordinates warped by a
   smooth random displacement (wavy, irregular borders), and only within a
   per-cell reach (so the sheet has holes and ragged edges, and cells of
   different sizes).
3. Stray pieces are removed (each label is one connected piece), small cells
   are dropped, labels are renumbered 1..N.
4. Borders are bright and 2 px thick, interiors dim with a coarse texture; then
   the optics and the camera as in :mod:`.imaging`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries, relabel_sequential

from .checks import _as_rng, _check_count, _check_dtype, _check_imaging, _check_number, _check_pair, _check_shape
from .imaging import _acquire, _illumination, _smooth_noise, _to_dtype

# How many random throws are tried per cell centre before the sheet counts as full.
_THROWS_PER_CELL = 40


def make_tissue_2d(
    shape=(256, 256),
    n_objects=(30, 50),
    seed=None,
    dtype=np.uint8,
    *,
    spacing_range=(22.0, 34.0),
    coverage=0.8,
    warp=4.0,
    texture=0.35,
    blur_sigma=0.8,
    background=0.04,
    gradient=0.05,
    photons=200.0,
    read_noise=2.0,
    noise=True,
):
    """A 2D single-channel image of an epithelial patch and its cell labels.

    Parameters
    ----------
    shape : (rows, columns)
    n_objects : int or (low, high)
        How many cell centres are thrown (fewer fit when the spacing is large).
    seed : None, int or numpy Generator
    dtype : uint8, uint16 or float32
    spacing_range : (low, high)
        The image's typical distance between neighbouring cell centres (pixels)
        is drawn from this range; cells are about that wide.
    coverage : float in (0, 1]
        How far a cell reaches, relative to the spacing: below 1 the sheet has
        gaps between groups of cells, 1 fills the field.
    warp : float
        Size (pixels) of the smooth displacement that makes borders wavy.
    texture : float
        Strength of the mottled interior.

    Returns
    -------
    image : (rows, columns) array of ``dtype``
    labels : (rows, columns) uint32 array of cells 1..N, each one connected piece.
    """
    shape = _check_shape(shape, 2)
    dtype = _check_dtype(dtype)
    spacing_range = _check_pair("spacing_range", spacing_range, 0.0)
    _check_number("coverage", coverage, 0.0, 1.0, low_open=True)
    _check_number("warp", warp, 0.0)
    _check_number("texture", texture, 0.0)
    _check_imaging(blur_sigma, texture, background, gradient, photons, read_noise)
    rng = _as_rng(seed)
    low, high = _check_count(n_objects)
    spacing = float(rng.uniform(*spacing_range))

    # Step 1: centres at least 0.8 spacing apart.
    centres = _throw_centres(rng, int(rng.integers(low, high + 1)), shape, 0.8 * spacing)
    # Step 2: nearest centre on warped coordinates, within each cell's reach.
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    if warp > 0:
        yy = yy + warp * _smooth_noise(rng, shape, spacing / 3)
        xx = xx + warp * _smooth_noise(rng, shape, spacing / 3)
    labels = np.zeros(shape, np.int32)
    if len(centres):
        dist = np.stack([np.hypot(yy - cy, xx - cx) for cy, cx in centres])  # (cells, rows, columns)
        nearest = dist.argmin(axis=0)
        reach = spacing * coverage * rng.uniform(0.6, 1.0, len(centres))
        inside = np.take_along_axis(dist, nearest[None], 0)[0] <= reach[nearest]
        labels = np.where(inside, nearest + 1, 0).astype(np.int32)
    # Step 3: one connected piece per cell, no slivers.
    labels = _clean(labels, min_size=int(0.15 * spacing**2))

    # Step 4: bright shared membranes, dim mottled cytoplasm.
    n = int(labels.max())
    border = find_boundaries(labels, mode="inner")
    border = ndimage.binary_dilation(border, iterations=1) & (labels > 0)
    membrane = np.zeros(n + 1, np.float32)
    membrane[1:] = rng.uniform(0.55, 1.0, n)
    interior = np.zeros(n + 1, np.float32)
    interior[1:] = rng.uniform(0.08, 0.25, n)
    mottle = np.clip(1.0 + texture * _smooth_noise(rng, shape, 2.0), 0.0, None)
    signal = np.where(border, membrane[labels], interior[labels] * mottle).astype(np.float32)
    if blur_sigma > 0:
        signal = ndimage.gaussian_filter(signal, blur_sigma, mode="nearest", truncate=3.0)
    signal = signal + _illumination(rng, shape, background, gradient)
    image = _to_dtype(_acquire(rng, signal, photons, read_noise, noise), dtype)
    return image, labels.astype(np.uint32)


def _throw_centres(rng, n: int, shape, min_distance: float) -> np.ndarray:
    """Up to ``n`` random points in the frame, pairwise at least ``min_distance`` apart."""
    centres = []
    for _ in range(n * _THROWS_PER_CELL):
        if len(centres) == n:
            break
        p = rng.uniform(0.0, 1.0, 2) * (np.asarray(shape, float) - 1)
        if not centres or np.min(np.hypot(*(np.asarray(centres) - p).T)) >= min_distance:
            centres.append(p)
    return np.asarray(centres, float).reshape(-1, 2)


def _clean(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Keep each label's largest connected piece, drop labels below ``min_size`` pixels, renumber 1..N."""
    out = np.zeros_like(labels)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        pieces, count = ndimage.label(labels[box] == index)
        if count == 0:
            continue
        sizes = np.bincount(pieces.ravel())[1:]
        if sizes.max() >= min_size:
            out[box][pieces == np.argmax(sizes) + 1] = index
    return relabel_sequential(out)[0]
