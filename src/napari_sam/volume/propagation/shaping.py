"""Shaping the model's answer on a slice before the walk judges it.

Three rules, each keeping only voxels the object can own:

* **fit to the signal** (:mod:`.signal`): the mask is cut at the object's
  edge level, calibrated on the annotated slice, so the blurred ghost of the
  object beyond its ends and around its poles is left out;
* **shrink past the widest slice**: once the walk has passed the object's
  widest cross-section, a convex object (a nucleus) only gets smaller, so
  the new mask may not reach more than a few pixels beyond the previous one.
  This is what keeps the walk from sliding into the next object stacked
  along z, where the hand-over is too gradual for an overlap test to see;
* **other objects are kept**: voxels of other objects (the labels the user
  committed, or the other objects of one "Propagate all") never join.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .anisotropy import REFERENCE_Z_SPACING, limit_factor
from .signal import SignalLevel, fit_to_signal

# A cross-section this much smaller than the largest one seen means the walk is past the widest slice.
SHRINKING_BELOW = 0.9


def grow_limit(mask: np.ndarray, z_spacing: float = REFERENCE_Z_SPACING) -> int:
    """How far (pixels) a shrinking object's next cross-section may reach beyond this one: its tilt allows a
    shift of a pixel or two, more for large objects, and in proportion to the distance to the next slice
    (``z_spacing`` in pixel widths, see :mod:`.anisotropy`)."""
    radius = np.sqrt(np.count_nonzero(mask) / np.pi)
    factor = limit_factor(z_spacing)
    return int(np.clip(round(0.12 * radius * factor), 1, max(1, round(4 * factor))))


def shape_answer(
    mask: np.ndarray,
    previous: np.ndarray,
    *,
    plane=None,
    level: SignalLevel | None = None,
    shrinking: bool = False,
    others: np.ndarray | None = None,
    z_spacing: float = REFERENCE_Z_SPACING,
) -> np.ndarray:
    """The model's ``mask`` after the rules above (each only where its information is given)."""
    mask = np.asarray(mask, dtype=bool)
    allowed = None if others is None else ~others  # where the mask may grow along the signal
    if others is not None:
        mask = mask & ~others
    if shrinking:
        reach = ndimage.binary_dilation(previous, iterations=grow_limit(previous, z_spacing))
        mask = mask & reach
        allowed = reach if allowed is None else allowed & reach
    if level is not None and plane is not None and mask.any():
        mask = fit_to_signal(mask, plane, level, previous, allowed=allowed)
        if others is not None:
            mask &= ~others  # filling holes must not take an enclosed neighbour back
    return mask
