"""Preparing a microscopy image for SAM's image encoder.

SAM was trained on 8-bit RGB photographs. Our rule for turning any image into
that:

* 2D grayscale (H, W), (H, W, 1), RGB (H, W, 3) or RGBA (H, W, 4, alpha
  dropped) are accepted; grayscale is repeated into three channels.
* uint8 is used as it is, so results match the reference SAM exactly.
* bool becomes 0 / 255.
* Every other dtype (uint16, int, float) is scaled linearly to 0-255 between
  two intensities ``lo`` and ``hi``. By default these are robust percentiles
  (0.5 % and 99.5 %) of the finite pixels, so a few hot pixels do not wash out
  the image; a caller may pass its own range instead (napari's contrast
  limits, or one range for a whole stack so slices are treated alike).
  If the percentiles coincide we fall back to min/max; a constant image becomes
  all zeros, whatever its value. NaN becomes 0 (the bottom of the range);
  +/-inf are clipped. The arithmetic cannot overflow, up to float64's limits.
* The resulting uint8 RGB image is resized (bilinear, Pillow) so its longest
  side is the model's input size (1024), normalised with SAM's pixel mean/std
  and zero-padded at the bottom/right to a square.

The rule, with its numbers, is returned as a string: it is part of what
identifies an embedding (an embedding made with another rule is another one).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

PERCENTILES = (0.5, 99.5)
# Percentiles of huge images are estimated on a regular subsample of about this many pixels.
_PERCENTILE_SAMPLE = 4_000_000
RULE_VERSION = 1


@dataclass(frozen=True)
class PreparedImage:
    rgb: np.ndarray  # (H, W, 3) uint8, the original size
    rule: str  # how the pixels were mapped to uint8


def check_image(image) -> np.ndarray:
    """Return ``image`` as an ndarray, or raise a ValueError/TypeError saying what is wrong."""
    if image is None:
        raise TypeError("no image given")
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
            image = image.float()
        image = image.numpy()
    try:
        arr = np.asarray(image)
    except Exception as err:  # dask/zarr arrays that refuse, ragged lists ...
        raise TypeError(f"cannot read the image as an array: {err}") from None
    if arr.dtype == object or arr.dtype.kind in "USVMm":
        raise TypeError(f"the image has dtype {arr.dtype}; expected numbers (uint8, uint16, float, bool ...)")
    if arr.dtype.kind == "c":
        raise TypeError("the image is complex-valued; pass its magnitude (np.abs) or its real part")
    if arr.size == 0:
        raise ValueError(f"the image is empty (shape {arr.shape})")
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"the image has shape {arr.shape}: a 3D array is read as (height, width, channels) with 1, 3 "
            "or 4 channels; for a z-stack or time series pass one 2D plane at a time"
        )
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"the image has {arr.ndim} dimension(s) {arr.shape}; expected a 2D plane (H, W) or an RGB(A) "
            "image (H, W, 3|4); pass one plane of a stack at a time"
        )
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"the image of shape {arr.shape} is too small: both sides need at least 2 pixels")
    return arr


def to_uint8_rgb(image, intensity_range: tuple[float, float] | None = None) -> PreparedImage:
    """Apply the module's rule: any accepted image -> (H, W, 3) uint8 and the rule used.

    For a grayscale image ``rgb`` is a read-only view repeating one uint8 plane
    three times (1 byte per pixel, not 3); :func:`resize_longest_side` resizes
    that plane alone, with the same result.
    """
    arr = _pixels(check_image(image))
    rule, scale = _rule(arr, intensity_range)
    u8 = scale(arr)
    if u8.ndim == 2:
        return PreparedImage(np.broadcast_to(u8[:, :, None], (*u8.shape, 3)), rule)
    return PreparedImage(np.ascontiguousarray(u8), rule)


def image_rule(image, intensity_range: tuple[float, float] | None = None) -> str:
    """The rule string :func:`to_uint8_rgb` would return, without scaling the pixels (part of a cache key)."""
    return _rule(_pixels(check_image(image)), intensity_range)[0]


def _pixels(arr: np.ndarray) -> np.ndarray:
    """The colour channels the rule uses: (H, W) grayscale or (H, W, 3); alpha is dropped."""
    if arr.ndim == 3:
        return arr[..., :3] if arr.shape[-1] >= 3 else arr[..., 0]
    return arr


def _rule(arr: np.ndarray, intensity_range):
    """(rule string, function mapping ``arr`` to uint8)."""
    if arr.dtype == np.uint8 and intensity_range is None:
        return f"v{RULE_VERSION}:uint8", lambda a: a
    if arr.dtype == np.bool_:
        return f"v{RULE_VERSION}:bool:0/255", lambda a: np.multiply(a, np.uint8(255), dtype=np.uint8)
    lo, hi, how = _intensity_range(arr, intensity_range)
    return f"v{RULE_VERSION}:linear:{how}:{lo!r}:{hi!r}", lambda a: _scale_to_uint8(a, lo, hi)


def _intensity_range(arr: np.ndarray, given) -> tuple[float, float, str]:
    if given is not None:
        try:
            lo, hi = (float(v) for v in given)
        except (TypeError, ValueError):
            raise ValueError(f"intensity_range must be two numbers (low, high), got {given!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
            raise ValueError(f"intensity_range must be finite with low < high, got ({lo}, {hi})")
        return lo, hi, "given"
    flat = arr.reshape(-1)
    if flat.size > _PERCENTILE_SAMPLE:
        flat = flat[:: int(np.ceil(flat.size / _PERCENTILE_SAMPLE))]
    if flat.dtype.kind == "f":
        flat = flat[np.isfinite(flat)]
    if flat.size == 0:  # all NaN/inf
        return 0.0, 1.0, "no-finite-pixels"
    flat = flat.astype(np.float64)
    lo, hi = _percentiles(flat)
    how = f"percentile{PERCENTILES[0]}-{PERCENTILES[1]}"
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
        how = "minmax"
    if hi <= lo:
        return (*_constant_range(lo), "constant")
    return float(lo), float(hi), how


# Beyond this, the differences np.percentile interpolates with (b - a) overflow float64.
_HUGE = 2.0**1020


def _percentiles(flat: np.ndarray) -> tuple[float, float]:
    if np.abs(flat).max() < _HUGE:
        lo, hi = np.percentile(flat, PERCENTILES)
        return float(lo), float(hi)
    # Halving is exact for such values, so the percentiles of the halves, doubled, are the ones
    # asked for, computed without an overflow.
    lo, hi = np.percentile(flat * 0.5, PERCENTILES)
    return float(lo) * 2.0, float(hi) * 2.0


def _constant_range(value: float) -> tuple[float, float]:
    """A range with ``value`` at its bottom, so a constant image becomes black.

    The range is one unit wide, or the gap to the next float where ``value + 1
    == value`` (from about 1e16 on); at the largest float64 there is no room
    above, and the range ends at it instead.
    """
    value = float(value)
    step = max(1.0, math.ulp(value))  # Python floats: value + step overflows to inf without a warning
    if math.isfinite(value + step):
        return value, value + step
    return value - step, value


# Pixels scaled per block: the float copies of a huge plane stay a few MB.
_BLOCK_PIXELS = 1 << 20
# float32 arithmetic (as always) where the range fits it with room to spare; float64 beyond.
_FLOAT32_SAFE = 1e37


def _scale_to_uint8(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(x - lo) / (hi - lo) * 255, clipped and rounded, in blocks of rows; never overflows or warns.

    Pixels beyond float32 (or the range's own overflow) become +-inf and are
    clipped to 255 / 0, which is where they belong; NaN becomes 0.
    """
    out = np.empty(arr.shape, np.uint8)
    fits_float32 = max(abs(lo), abs(hi)) < _FLOAT32_SAFE and (hi - lo) > 1.0 / _FLOAT32_SAFE
    per_row = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)))
    rows = max(1, _BLOCK_PIXELS // per_row)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        for r in range(0, arr.shape[0], rows):
            block = arr[r : r + rows]
            x = _scaled_float32(block, lo, hi) if fits_float32 else _scaled_float64(block, lo, hi)
            np.nan_to_num(x, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
            np.clip(x, 0, 255, out=x)
            np.rint(x, out=x)
            out[r : r + rows] = x
    return out


def _scaled_float32(block: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x = block.astype(np.float32)
    x -= np.float32(lo)
    x *= np.float32(255.0 / (hi - lo))
    return x


def _scaled_float64(block: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x = block.astype(np.float64)
    span = hi - lo
    if np.isfinite(span):
        x -= lo
    else:  # hi - lo itself overflows: the same quotient on halves
        x *= 0.5
        x -= lo * 0.5
        span = hi * 0.5 - lo * 0.5
    x /= span  # divided, not multiplied by 255 / span, which overflows for tiny spans
    x *= 255.0
    return x


def resized_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(h, w) after scaling the longest side to ``long_side`` (rounded as SAM does, but at least 1 pixel).

    A strip more than 2048 times as long as it is wide (2 x 5000 at 1024)
    would round to 0 pixels across; it keeps 1, and its masks are resized
    back to its own shape like any other image's.
    """
    scale = long_side / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def resize_longest_side(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """Bilinear (Pillow) resize of a uint8 RGB image to ``long_side`` on its longest side."""
    h, w = resized_shape(rgb.shape[0], rgb.shape[1], long_side)
    if (h, w) == rgb.shape[:2]:
        return rgb
    if rgb.strides[2] == 0:
        # One plane repeated (grayscale from to_uint8_rgb): Pillow resizes each channel alike, so
        # resizing the plane once gives the same pixels without a 3- (Pillow: 4-) byte copy of it.
        gray = np.asarray(Image.fromarray(np.ascontiguousarray(rgb[:, :, 0])).resize((w, h), Image.BILINEAR))
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))


def encoder_input(resized: np.ndarray, pixel_mean: torch.Tensor, pixel_std: torch.Tensor, side: int, device, dtype) -> torch.Tensor:
    """uint8 (h, w, 3) -> normalised, zero-padded (1, 3, side, side) tensor."""
    if not resized.flags.writeable:
        # Pillow's output (and e.g. memory-mapped input) is read-only; torch warns on those.
        resized = resized.copy()
    x = torch.from_numpy(resized).to(device).permute(2, 0, 1).float()
    x = (x - pixel_mean.to(device)) / pixel_std.to(device)
    h, w = resized.shape[:2]
    x = torch.nn.functional.pad(x, (0, side - w, 0, side - h))
    return x.unsqueeze(0).to(dtype)


def stack_intensity_range(stack) -> tuple[float, float]:
    """One (lo, hi) for a whole stack, by the same percentile rule as a single image.

    Passing it as ``intensity_range`` for every slice keeps the contrast of the
    slices consistent (a slice with one bright nucleus is not stretched
    differently from its neighbours) and makes each slice's embedding identity
    independent of which other slices were looked at first. uint8 and bool
    stacks need no range: return None for them.
    """
    arr = np.asarray(stack)
    if arr.dtype == np.uint8 or arr.dtype == np.bool_:
        return None
    if arr.dtype.kind not in "uif":
        raise TypeError(f"the stack has dtype {arr.dtype}; expected numbers")
    lo, hi, _ = _intensity_range(arr, None)
    return lo, hi
