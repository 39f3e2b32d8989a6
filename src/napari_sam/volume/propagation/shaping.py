"""Shaping the model's answer on a slice before the walk judges it.

Rules, each keeping only voxels the object can own:

* **fit to the signal** (:mod:`.signal`): the mask is cut at the object's
  edge level, calibrated on the annotated slice, so the blurred ghost of the
  object beyond its ends and around its poles is left out; near the
  object's widest slice, where the model's masks lie inside the object, the
  mask then grows a pixel along the signal (see :data:`CORE_BELOW_STEEPEST`);
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
from . import signal
from .signal import SignalLevel, fit_to_signal

# A cross-section this much smaller than the largest one seen means the walk is past the widest slice.
SHRINKING_BELOW = 0.9
# Near its widest slice (the mask, cut at the edge level, at least CORE_AREA of the largest on the walk) a nucleus'
# cross-section reaches further into its blur than the edge level: the model's masks there are too small (the loss of
# 3D IoU of the median nuclei is mostly missed rim voxels on these slices, benchmarks/_diag_decompose.py). There the
# mask grows along the signal, at most CORE_REACH pixels, to the annotation's steepest level less
# CORE_BELOW_STEEPEST of its contrast (signal.SignalLevel.steepest_fraction), where that is below the edge level: a
# small nucleus' profile has no plateau, its steepest level lies high and it is not grown. The walk follows the masks
# before this growth (walk.py), so it never compounds. Measured (_diag_ends.py and the same flows with more digits,
# 44 nuclei, mean / median / worst 3D IoU): Propagate all 0.853 / 0.885 / 0.575 without, 0.862 / 0.899 / 0.575 as set;
# one object at a time 0.790 / 0.878 / 0.116 (5 below 0.5) without, 0.799 / 0.890 / 0.113 (5) as set. Propagate all,
# other settings: below the steepest level by 0.18 0.860 / 0.901, reach 2 0.861 / 0.896, CORE_AREA 0.6 0.860 / 0.900.
# With the grown masks prompting the next slice (compounding): 0.861 / 0.900 / 0.576, but one object at a time 7
# below 0.5 (a walk slid into the next nucleus along z); also compounding, a fixed 0.3, no gate: 0.859 / 0.903 / 0.543
# (small nuclei grow into their neighbours); 0.3 with reach 2 on every slice: 0.834.
CORE_AREA = 0.75
CORE_REACH = 1
CORE_BELOW_STEEPEST = 0.15  # None: no growth


def core_fraction(level: SignalLevel) -> float | None:
    """The fraction of the contrast a slice near the object's widest grows to, or None (it is not grown)."""
    if CORE_BELOW_STEEPEST is None:
        return None
    fraction = level.steepest_fraction - CORE_BELOW_STEEPEST
    return fraction if np.isfinite(fraction) and fraction < signal.EDGE_FRACTION else None


def grow_limit(mask: np.ndarray, z_spacing: float = REFERENCE_Z_SPACING) -> int:
    """How far (pixels) a shrinking object's next cross-section may reach beyond this one: its tilt allows a
    shift of a pixel or two, more for large objects, and in proportion to the distance to the next slice
    (``z_spacing`` in pixel widths, see :mod:`.anisotropy`)."""
    radius = np.sqrt(np.count_nonzero(mask) / np.pi)
    factor = limit_factor(z_spacing)
    return int(np.clip(round(0.12 * radius * factor), 1, max(1, round(4 * factor))))


def shape_answer(mask: np.ndarray, previous: np.ndarray, **rules) -> np.ndarray:
    """The model's ``mask`` after the rules above, grown near the widest slice where ``largest`` (the largest
    cross-section on the walk) is given: the second of :func:`shaped_and_grown`."""
    return shaped_and_grown(mask, previous, **rules)[1]


def shaped_and_grown(
    mask: np.ndarray,
    previous: np.ndarray,
    *,
    plane=None,
    level: SignalLevel | None = None,
    shrinking: bool = False,
    others: np.ndarray | None = None,
    z_spacing: float = REFERENCE_Z_SPACING,
    largest: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(shaped, grown)``: the model's ``mask`` after the rules above, and the same grown near the widest slice
    (``shaped`` itself where it is not grown). The walk follows the first and writes the second, from one fit."""
    mask = np.asarray(mask, dtype=bool)
    allowed = None if others is None else ~others  # where the mask may grow along the signal
    if others is not None:
        mask = mask & ~others
    if shrinking:
        reach = ndimage.binary_dilation(previous, iterations=grow_limit(previous, z_spacing))
        mask = mask & reach
        allowed = reach if allowed is None else allowed & reach
    grown = mask
    if level is not None and plane is not None and mask.any():
        mask = grown = fit_to_signal(mask, plane, level, previous, allowed=allowed)
        fraction = core_fraction(level)
        if fraction is not None and largest and np.count_nonzero(mask) >= CORE_AREA * largest:
            grown = signal.grow_along_signal(mask, plane, level, fraction, CORE_REACH, allowed)
        if others is not None:
            # filling holes must not take an enclosed neighbour back
            mask, grown = mask & ~others, grown & ~others
    return mask, grown
