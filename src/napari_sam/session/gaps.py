"""Where to look next: the parts of the image with signal that no object and no proposal covers.

After accepting the confident proposals and fixing the unsure ones, what is
left is what neither the user nor the model found. A fluorescence image shows
its objects as signal above the background, so the gaps are:

1. the foreground: smooth the image a little (noise is no object), estimate
   the background level and its noise from the pixels below Otsu's threshold
   (median and median absolute deviation: robust to the objects), and call
   foreground whatever is clearly above it, dim objects included;
2. minus what is covered (objects, proposals), grown by a few pixels so the
   blurred rim of a covered object is no gap;
3. opened (thin slivers between covered objects are no object), split into
   connected regions, the tiny ones dropped;
4. ranked by area x contrast (the mean signal above background, relative to
   the brightest objects): a big bright region unlabelled is the first place
   to look.

Works on one plane (rows, columns) or a stack (z, rows, columns); regions of a
stack are connected through z. Only numpy, scipy and scikit-image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

#: Foreground is this many background noise levels (robust sigma) above the background.
NOISE_LEVELS = 5.0
#: Covered objects are grown by this many pixels: their blurred rim is not a gap.
RIM = 2
#: Regions smaller than this many pixels (voxels in a stack) are no object.
MIN_AREA = 20


@dataclass(frozen=True)
class Gap:
    """One uncovered region: ``rank`` 1 is the first to look at (its label in :attr:`Gaps.labels`)."""

    rank: int
    area: int
    contrast: float  # mean signal above background, as a share of the brightest objects' (0..1, may exceed 1)
    score: float  # area x contrast: the ranking
    centre: tuple[float, ...]  # indices (z, row, column) or (row, column) of its centre of mass


@dataclass
class Gaps:
    """The gaps of one plane or stack: ``labels`` (label = rank) and the ranked list."""

    labels: np.ndarray
    gaps: list[Gap]

    def __len__(self) -> int:
        return len(self.gaps)


def _as_grey(image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim not in (2, 3):
        raise ValueError(f"gaps are found on a plane (rows, columns) or a stack (z, rows, columns), got shape "
                         f"{arr.shape}: take one plane or stack first (an RGB plane: average its channels)")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"the image must hold real numbers, got {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError("the image holds NaN or infinite values: replace them (for example by the background) first")
    return arr


def foreground(image, *, noise_levels: float = NOISE_LEVELS, sigma: float = 1.0) -> tuple[np.ndarray, float, float]:
    """``(mask, background, signal)``: where the (smoothed) image is clearly above its background.

    ``signal`` is how far the bright objects (the 99th percentile) lie above the
    background, so contrasts of different images compare.
    """
    grey = _as_grey(image)
    # Smooth within each plane only: a stack's z step is often larger than its pixels.
    smooth = ndimage.gaussian_filter(grey, sigma=(0.0,) * (grey.ndim - 2) + (sigma, sigma)) if sigma > 0 else grey
    if np.all(smooth == smooth.flat[0]):
        return np.zeros(grey.shape, bool), float(smooth.flat[0]), 0.0
    low = smooth[smooth <= threshold_otsu(smooth)]
    background = float(np.median(low))
    noise = 1.4826 * float(np.median(np.abs(low - background)))
    signal = float(np.percentile(smooth, 99)) - background
    level = background + max(noise_levels * noise, 0.1 * signal)  # a noiseless image still has a threshold
    return smooth > level, background, signal


def find_gaps(image, covered, *, min_area: int = MIN_AREA, rim: int = RIM,
              noise_levels: float = NOISE_LEVELS) -> Gaps:
    """The regions of ``image`` with signal that ``covered`` (objects or proposals: a mask or labels) leaves out.

    ``image`` and ``covered`` have the same shape: a plane or a stack.
    """
    grey = _as_grey(image)
    covered = np.asarray(covered)
    if covered.shape != grey.shape:
        raise ValueError(f"the covered mask has shape {covered.shape}, the image {grey.shape}: give them for the "
                         "same plane or stack")
    if not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ValueError(f"min_area must be a whole number of pixels >= 1, got {min_area!r}")
    if not isinstance(rim, (int, np.integer)) or rim < 0:
        raise ValueError(f"rim must be a whole number of pixels >= 0, got {rim!r}")
    # 1. the foreground, dim objects included
    signal_mask, background, signal = foreground(grey, noise_levels=noise_levels)
    # 2. minus the covered parts and their rims (grown within each plane)
    plane = np.ones((1,) * (grey.ndim - 2) + (3, 3), bool)
    taken = covered != 0
    if rim and taken.any():
        taken = ndimage.binary_dilation(taken, structure=plane, iterations=rim)
    free = signal_mask & ~taken
    # 3. no slivers, no specks
    free = ndimage.binary_opening(free, structure=plane, iterations=2)
    regions, n = ndimage.label(free)
    if n == 0:
        return Gaps(np.zeros(grey.shape, np.uint32), [])
    index = np.arange(1, n + 1)
    areas = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    means = ndimage.mean(grey, regions, index)
    centres = ndimage.center_of_mass(free, regions, index)
    # 4. ranked: area x contrast
    contrast = np.clip((np.asarray(means) - background) / max(signal, 1e-12), 0.0, None)
    score = areas * contrast
    keep = [k for k in np.argsort(-score, kind="stable") if areas[k] >= min_area]
    lut = np.zeros(n + 1, np.uint32)
    gaps = []
    for rank, k in enumerate(keep, start=1):
        lut[k + 1] = rank
        gaps.append(Gap(rank, int(areas[k]), round(float(contrast[k]), 3), round(float(score[k]), 1),
                        tuple(round(float(c), 1) for c in centres[k])))
    return Gaps(lut[regions], gaps)
