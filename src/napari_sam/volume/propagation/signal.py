"""Fitting each propagated mask to the object's own signal, calibrated on the annotated slice.

Why: a microscope blurs along z several times more than across, so slices
just beyond an object's end still show a faint, wider ghost of it, and SAM
outlines the ghost. Near the object's poles the masks come out too large,
and past its ends the walk goes on for a slice or two. The annotated slice
tells us where the object's edge lies in its own signal: a level between
the signal just around the object and the signal inside it, 0.4 of the way
from the one to the other (the annotated mask must be reproduced well by
some level, else the fit is not used). Cutting each propagated mask at
that level keeps the true cross-section and lets the ghost vanish, so the
walk stops where the object ends. The level comes from the object itself,
so it needs no tuning per stack; it works for bright objects on a dark
background and for dark objects on a bright one.

When the annotated slice's own edge does not follow a level of its signal
(a textured object, an object defined by its outline only), the fit is not
used: :func:`calibrate` returns None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SMOOTHING = 1.0  # pixels: the noise of one pixel must not cut holes in the mask
MIN_CALIBRATION_IOU = 0.75  # the annotated mask must be this well explained by a level of its signal
LEVELS = 19  # candidate levels tried between the signal around the object and inside it
# The edge level: this far from the surroundings' signal to the inside's (see calibrate), mixed with the level
# whose cut reproduces the annotated mask best by BEST_CUT_WEIGHT (0: the fraction alone).
EDGE_FRACTION = 0.4
BEST_CUT_WEIGHT = 0.0
# A small nucleus' blurred profile has no plateau: its median inside lies below its true brightness, so 0.4 of the
# way to it lies low and the masks come out too wide (held-out stacks: too much rim twice the missed rim). The level
# of its steepest edge (SignalLevel.steepest_fraction) lies high there (0.55-0.75 against 0.4-0.45 for large ones):
# the edge goes up to that less EDGE_BELOW_STEEPEST, never below EDGE_FRACTION (None: EDGE_FRACTION alone). Chosen on
# the tuning stacks (benchmarks/_diag_ends.py, Propagate all, 44 nuclei, mean / median / worst 3D IoU): None
# 0.863 / 0.900 / 0.575; 0.05 0.866 / 0.909 / 0.585, 0.065 0.866 / 0.910 / 0.586, 0.08 0.866 / 0.908 / 0.587,
# 0.1 0.866 / 0.904 / 0.585, 0.15 0.864 / 0.900 / 0.578. Held-out stacks (56 nuclei): 0.784 / 0.851 / 0.117
# without, 0.798 / 0.874 / 0.243 at 0.08 (7 below 0.5 both).
EDGE_BELOW_STEEPEST = 0.08
# The model's masks lie a little inside the object on most slices; where the object's signal goes on beyond the
# mask's rim, the mask may grow along it, at most GROW_REACH pixels (0: the level only cuts), to the edge level or
# to GROW_FRACTION of the contrast. Measured (benchmarks/_diag_ends.py, Propagate all, 44 nuclei, mean / median 3D
# IoU against 0.853 / 0.884 without): to the edge level 1, 2, 3, 5 pixels 0.853 / 0.887, 0.853 / 0.885,
# 0.852 / 0.884, 0.850 / 0.882 (worst 0.570 each); to 0.4 of each slice's own contrast (GROW_LOCAL), 2 pixels,
# 0.817 / 0.852. The masks already reach the edge level, and a lower level takes the blur: off.
GROW_REACH = 0
GROW_FRACTION = None  # the level the mask grows to, as EDGE_FRACTION (None: the edge level itself)
# Grow to that fraction of this slice's own contrast (the cut mask's median signal over the annotation's
# surroundings) rather than the annotated slice's: away from its widest slice a nucleus is dimmer (blur in z).
GROW_LOCAL = False


@dataclass(frozen=True)
class SignalLevel:
    level: float  # the edge level in the smoothed signal
    bright: bool  # True: the object is brighter than its surroundings
    calibration_iou: float  # how well the level reproduces the annotated mask
    inside_signal: float = float("nan")  # the annotated object's median (smoothed) signal
    around_signal: float = float("nan")  # its surroundings' lower quartile
    # where the annotated slice's signal is steepest around its mask's rim (the gradient-weighted mean signal there),
    # as a fraction of the way from around_signal to inside_signal: about 0.45 for a large nucleus, more for a small
    # one, whose blurred profile has no plateau
    steepest_fraction: float = float("nan")

    def strength(self, plane: np.ndarray, mask: np.ndarray) -> float:
        """The mean signal in ``mask`` on ``plane``, as a fraction of the annotated object's own
        (1: as bright as the annotation, 0: as its surroundings)."""
        window = _window(mask, 0)
        if window is None:
            return 0.0
        values = np.asarray(plane, dtype=np.float32)[window][mask[window]]
        return float((values.mean() - self.around_signal) / (self.inside_signal - self.around_signal))

    def inside(self, plane: np.ndarray) -> np.ndarray:
        """Pixels of ``plane`` on the object's side of the edge level."""
        smooth = smoothed(plane)
        return smooth >= self.level if self.bright else smooth <= self.level


def smoothed(plane) -> np.ndarray:
    plane = np.asarray(plane, dtype=np.float32)
    if plane.ndim == 3:  # RGB(A): the mean of the colour channels
        plane = plane[..., :3].mean(axis=-1)
    return ndimage.gaussian_filter(plane, SMOOTHING, mode="nearest")


def _ring(mask: np.ndarray) -> np.ndarray:
    """The surroundings of ``mask``: a band a few pixels wide, wider for larger objects."""
    radius = np.sqrt(np.count_nonzero(mask) / np.pi)
    width = int(np.clip(round(0.2 * radius), 2, 8))
    return ndimage.binary_dilation(mask, iterations=width) & ~mask


def calibrate(plane, mask) -> SignalLevel | None:
    """The edge level of the object ``mask`` outlines in ``plane``, or None if its edge is not a level of its signal."""
    mask = np.asarray(mask, dtype=bool)
    if np.count_nonzero(mask) < 9:
        return None
    smooth = smoothed(plane)
    ring = _ring(mask)
    if not ring.any():
        return None
    # The surroundings' lower quartile, not their median: a bright neighbour in the ring must not raise it.
    inside, around = float(np.median(smooth[mask])), float(np.percentile(smooth[ring], 25))
    if inside == around:
        return None
    bright = inside > around
    # The level between the two whose cut reproduces the annotated mask best (near it: mask and ring).
    near = smooth[mask | ring]
    truth = mask[mask | ring]
    best_iou, level = -1.0, 0.5 * (inside + around)
    for candidate in np.linspace(around, inside, LEVELS + 2)[1:-1]:
        fitted = near >= candidate if bright else near <= candidate
        iou = np.count_nonzero(fitted & truth) / np.count_nonzero(fitted | truth)
        if iou > best_iou:
            best_iou, level = iou, float(candidate)
    # The edge at 0.4 of the way from the surroundings to the inside, not at the best cut of the annotated mask:
    # the model's masks (the click's too) lie a little inside the object, and cutting at their own level keeps
    # every propagated slice as small; higher levels lose the rims, lower ones keep the blurred ghost beyond the
    # poles. Measured (benchmarks/_diag_ends.py on bench_propagation.py's stacks, Propagate all, 44 nuclei): mean 3D IoU 0.839 for halfway between the best cut and the half-maximum (the rule before),
    # 0.825 for the best cut alone, 0.826 for halfway to 0.3; the fraction alone 0.790 at 0.25, 0.843 at 0.35,
    # and with the claims by continuity (objects.py) 0.853 at 0.4, 0.842 at 0.45. A fraction of the object's
    # own contrast, so it needs no tuning per stack.
    steepest = _steepest_fraction(smooth, mask, inside, around)
    fraction = EDGE_FRACTION
    if EDGE_BELOW_STEEPEST is not None and np.isfinite(steepest):
        fraction = max(fraction, steepest - EDGE_BELOW_STEEPEST)
    level = BEST_CUT_WEIGHT * level + (1 - BEST_CUT_WEIGHT) * (around + fraction * (inside - around))
    iou = best_iou
    if iou < MIN_CALIBRATION_IOU:
        return None
    return SignalLevel(level, bright, float(iou), inside, around, steepest)


def _steepest_fraction(smooth: np.ndarray, mask: np.ndarray, inside: float, around: float) -> float:
    """The gradient-weighted mean signal in a band of 3 pixels on both sides of ``mask``'s rim, as a fraction of the
    way from ``around`` to ``inside``: the level of a blurred edge, whatever the object's size."""
    band = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_erosion(mask, iterations=3)
    window = _window(band, 1)
    gy, gx = np.gradient(smooth[window].astype(np.float64))
    weight = (gx ** 2 + gy ** 2)[band[window]]
    if weight.sum() <= 0:
        return float("nan")
    level = float((weight * smooth[window][band[window]]).sum() / weight.sum())
    return (level - around) / (inside - around)


def fit_to_signal(mask: np.ndarray, plane, level: SignalLevel, seed: np.ndarray | None = None,
                  grow: int | None = None, allowed: np.ndarray | None = None,
                  fraction: float | None = None) -> np.ndarray:
    """``mask`` cut at the object's edge level: the part on the object's side, in one piece, without holes,
    then grown along the object's side up to ``grow`` pixels beyond its rim (default :data:`GROW_REACH`),
    only into ``allowed`` pixels (default: anywhere), to ``fraction`` of the contrast (default
    :data:`GROW_FRACTION`; None: the edge level).

    Of the pieces left, the one overlapping ``seed`` (the previous slice's
    mask) most is kept, so a bright speck at the mask's rim does not become
    the object.
    """
    mask = np.asarray(mask, dtype=bool)
    cut = np.zeros_like(mask)
    reach = GROW_REACH if grow is None else int(grow)
    window = _window(mask, 3 * int(np.ceil(SMOOTHING)) + 1 + reach)
    if window is None:
        return cut
    inside = level.inside(np.asarray(plane)[window])  # smoothing near the mask only: a slice's time stays the model's
    cut[window] = mask[window] & inside
    pieces, n = ndimage.label(cut)
    if n == 0:
        return cut
    if n > 1:
        weights = seed if seed is not None and (seed & cut).any() else cut
        overlap = np.bincount(pieces[weights], minlength=n + 1)
        overlap[0] = 0
        cut = pieces == int(np.argmax(overlap))
    cut = ndimage.binary_fill_holes(cut)
    fraction = GROW_FRACTION if fraction is None else fraction
    if reach > 0:
        edge = fraction is None and not GROW_LOCAL  # grown to the edge level itself: its pixels are known
        cut = grow_along_signal(cut, plane, level, fraction, reach, allowed, window=window,
                                inside=inside if edge else None)
    return cut


def grow_along_signal(cut: np.ndarray, plane, level: SignalLevel, fraction: float | None, reach: int,
                      allowed: np.ndarray | None = None, *, window=None, inside=None) -> np.ndarray:
    """``cut`` (a mask already fitted to the signal) grown up to ``reach`` pixels beyond its rim, onto pixels whose
    smoothed signal lies on the object's side of ``fraction`` of its contrast (None: the edge level), only into
    ``allowed`` pixels (default: anywhere). ``window``/``inside``: what :func:`fit_to_signal` has computed already."""
    cut = np.array(cut, dtype=bool)
    window = window if window is not None else _window(cut, 3 * int(np.ceil(SMOOTHING)) + 1 + reach)
    if window is None or reach <= 0:
        return cut
    if inside is None and fraction is None and not GROW_LOCAL:
        inside = level.inside(np.asarray(plane)[window])
    if inside is None:
        smooth = smoothed(np.asarray(plane)[window])
        fraction = EDGE_FRACTION if fraction is None else fraction
        top = float(np.median(smooth[cut[window]])) if GROW_LOCAL else level.inside_signal
        low = level.around_signal + fraction * (top - level.around_signal)
        inside = smooth >= low if level.bright else smooth <= low
    if allowed is not None:
        inside = inside & np.asarray(allowed, dtype=bool)[window]
    cut[window] = _grown(cut[window], inside, reach)
    return cut


def _grown(cut: np.ndarray, inside: np.ndarray, reach: int) -> np.ndarray:
    """``cut`` grown one pixel at a time, ``reach`` times, into pixels on the object's side of the level only."""
    for _ in range(reach):
        cut = ndimage.binary_dilation(cut) & inside | cut
    return cut


def _window(mask: np.ndarray, margin: int):
    """The rows and columns around ``mask``'s pixels, ``margin`` wider on each side (None if empty)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
            slice(max(cols[0] - margin, 0), cols[-1] + margin + 1))
