"""How far apart the slices are, compared with the pixels: the walk's per-slice limits follow it.

Microscope stacks are rarely isotropic: a confocal stack often has slices
2 to 5 pixel widths apart. Between two slices an object's outline moves
(it is tilted) and its radius changes (towards its poles) in proportion to
that distance, so a limit of "a pixel or two per slice" is right for one
spacing only. The walk's limits were measured on stacks whose slices are
about :data:`REFERENCE_Z_SPACING` pixels apart (``make_nuclei_3d``'s
default, and ``bench_propagation.py``'s stacks); for another spacing they
are scaled by ``z_spacing / REFERENCE_Z_SPACING``.

``z_spacing`` is in xy pixel units: the slice distance divided by the pixel
size, as napari's layer ``scale`` gives both (:func:`z_spacing_from_scale`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

REFERENCE_Z_SPACING = 2.0  # pixels between slices the walk's limits were measured with


def check_z_spacing(z_spacing) -> float:
    """``z_spacing`` as a float (None: the reference spacing); a clear error for 0, negative, NaN, inf or text."""
    if z_spacing is None:
        return REFERENCE_Z_SPACING
    if isinstance(z_spacing, bool):
        raise TypeError(f"z_spacing (slice distance in pixel widths) must be a number, got {z_spacing!r}")
    try:
        value = float(z_spacing)
    except (TypeError, ValueError):
        raise TypeError(f"z_spacing (slice distance in pixel widths) must be a number, got {z_spacing!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"z_spacing (slice distance in pixel widths) must be a finite number above 0, got {value}; "
                         "check the image's scale")
    return value


def z_spacing_from_scale(scale: Sequence[float], axis: int) -> float | None:
    """The distance between slices along ``axis`` in pixel widths, from an image layer's ``scale``.

    ``scale`` ends with the rows' and columns' pixel size. A scale of all ones
    is napari's default for an image whose voxel size nobody gave: then None
    (the walk keeps its reference spacing, the one its limits were measured
    with). Raises ValueError, naming the axis, for a size of 0 or not
    a number, and for rows and columns of different size. A negative size
    is napari's way of showing an axis flipped: its distance is the size's
    absolute value.
    """
    given = tuple(float(s) for s in scale)
    if len(given) < 3 or not 0 <= axis < len(given) - 2:
        raise ValueError(f"the scale {given} has no slice axis {axis} before its rows and columns")
    for k, s in enumerate(given):
        if not math.isfinite(s) or s == 0:
            raise ValueError(f"the image's scale {given} has a size of {s} on axis {k}; every voxel size "
                             "must be a number other than 0 (set the layer's scale)")
    scale = [abs(s) for s in given]
    if all(s == 1.0 for s in scale):
        return None
    rows, cols = scale[-2:]
    if not math.isclose(rows, cols, rel_tol=1e-3):
        raise ValueError(f"the image's pixels are not square (rows {rows}, columns {cols}); the walk needs square "
                         "pixels to compare the slice distance with")
    return scale[axis] / rows


def limit_factor(z_spacing: float) -> float:
    """How much larger the per-slice limits are for slices ``z_spacing`` pixels apart than at the reference."""
    return z_spacing / REFERENCE_Z_SPACING
