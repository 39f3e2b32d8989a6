"""A stream of varied 2D (image, labels) pairs for training the model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from numbers import Integral

import numpy as np

from .cells import make_cells_2d
from .checks import (
    SUPPORTED_DTYPES,
    _as_rng,
    _check_count,
    _check_dtype,
    _check_number,
    _check_pair,
    _check_shape,
)
from .nuclei import make_nuclei_2d


def iter_training_pairs(
    seed=None,
    size=256,
    dtypes=SUPPORTED_DTYPES,
    *,
    n_objects=(3, 25),
    radius_range=(6.0, 30.0),
    touching_range=(0.0, 0.7),
    brightness_range=(0.3, 0.8),
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
    touching_range : (min, max)
        Each pair's chance that a nucleus is pressed against another is drawn from it.
    brightness_range : (min, max)
        Per-nucleus brightness (make_nuclei_2d); a wider range gives more contrast between neighbours.
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
    touching_range = _check_pair("touching_range", touching_range, 0.0, 1.0, low_open=False)
    brightness_range = _check_pair("brightness_range", brightness_range, 0.0, 1.0)
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
                touching=rng.uniform(*touching_range),
            )
            pair_seed = int(rng.integers(2**63))
            if rng.random() < cells_fraction:
                yield make_cells_2d(shape, cell_count, pair_seed, dtype, radius_range=cell_radii, **imaging)
            else:
                yield make_nuclei_2d(shape, n_objects, pair_seed, dtype, radius_range=radius_range,
                                     brightness_range=brightness_range, texture=rng.uniform(0.0, 0.3), **imaging)
            produced += 1

    return stream()
