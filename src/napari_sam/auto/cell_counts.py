"""Pixel counts of upsampled masks, read from the low-resolution logits: the stability score's numbers.

The stability score needs, per mask, how many pixels of the 1024 x 1024
upsampled logits lie above ``threshold + offset`` and above ``threshold -
offset``. Upsampling every mask to a million pixels only to count them was
most of the "finish" step's time. The counts follow from the low-resolution
logits (256 x 256 for SAM) and a few exact pixels:

* torch's bilinear upsampling by an even integer factor ``f``
  (``align_corners=False``) places output rows ``f*i + f/2 .. f*i + 3f/2 - 1``
  between low-resolution rows ``i`` and ``i + 1``, each pixel a weighted mean
  (weights >= 0 summing to 1) of the cell's 4 corners. A cell whose corners
  are all above a threshold (by a margin for rounding) gives ``f*f`` pixels
  above it; one whose corners are all below gives none. Only the cells that
  straddle a threshold need their pixels' real values;
* those values are computed by the same torch kernel on the straddling cells
  packed side by side into wide strips, which gives them bit for bit (the
  kernel's arithmetic differs on narrow inputs, so the cells are not
  upsampled one by one; tests/auto/test_cell_counts.py checks the equality);
* the outer ``f/2`` rows and columns of the plane read a clamped source
  position (one low-resolution row or column only): they are upsampled
  exactly, as thin strips of the plane.

The cost follows the masks' boundaries, not their area. It applies where the
upsampled plane is the image, with no second resize and no padding (an image
of the model's input size, e.g. 1024 x 1024 for SAM); elsewhere the callers
count on whole planes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Cells packed side by side per strip when their pixels are computed (wide enough for the kernel's wide path).
CELLS_PER_STRIP = 64
#: Masks counted at once: about a dozen (N, L-1, L-1) temporaries, 3 MB each per 16 masks of 256 x 256.
MASKS_AT_ONCE = 16
#: Rounding of the bilinear weighted mean stays far below this share of the logits' magnitude.
RELATIVE_MARGIN = 1e-5


def applies(low_res: torch.Tensor, side: int, input_size, original_size) -> bool:
    """Whether counts from cells equal those of the whole upsampled planes for these logits."""
    lh, lw = low_res.shape[-2:]
    return (lh == lw and lw > 1 and side % lw == 0 and (side // lw) % 2 == 0
            and tuple(input_size) == tuple(original_size) == (side, side))


def _corner_range(low: torch.Tensor):
    c00, c01, c10, c11 = low[:, :-1, :-1], low[:, :-1, 1:], low[:, 1:, :-1], low[:, 1:, 1:]
    lowest = torch.minimum(torch.minimum(c00, c01), torch.minimum(c10, c11))
    highest = torch.maximum(torch.maximum(c00, c01), torch.maximum(c10, c11))
    margin = (RELATIVE_MARGIN * low.abs().flatten(1).amax(1).nan_to_num(0.0, 0.0, 0.0) + 1e-6).view(-1, 1, 1)
    return lowest, highest, margin


@torch.inference_mode()
def straddling_share(low_res: torch.Tensor, thresholds) -> torch.Tensor:
    """(N,) share of each mask's cells that straddle one of ``thresholds`` (their pixels must be computed).

    Counting by cells pays only where this is small: a straddling cell costs several times a
    whole-plane pixel (noise logits of random weights straddle on about 60 % of the cells).
    """
    parts = []
    for s in range(0, len(low_res), MASKS_AT_ONCE):
        lowest, highest, margin = _corner_range(low_res[s : s + MASKS_AT_ONCE].float())
        straddles = torch.zeros_like(lowest, dtype=torch.bool)
        for t in thresholds:
            straddles |= ~(lowest > t + margin) & (highest > t - margin)
        parts.append(straddles.flatten(1).float().mean(1))
    return torch.cat(parts) if parts else torch.zeros(0)


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


@torch.inference_mode()
def counts_above(low_res: torch.Tensor, side: int, thresholds) -> torch.Tensor:
    """(N, len(thresholds)) int64: for each (N, L, L) mask, the pixels of its ``side`` x ``side`` upsampled
    logits strictly above each threshold; the numbers of ``(upsampled > t).sum()`` on the whole plane."""
    if len(low_res) <= MASKS_AT_ONCE:
        return _counts_above(low_res.float(), side, thresholds)
    return torch.cat([_counts_above(low_res[s : s + MASKS_AT_ONCE].float(), side, thresholds)
                      for s in range(0, len(low_res), MASKS_AT_ONCE)])


def _counts_above(low: torch.Tensor, side: int, thresholds) -> torch.Tensor:
    n, L, _ = low.shape
    f = side // L
    h = f // 2  # the clamped rows/columns at each edge
    out = torch.zeros((n, len(thresholds)), dtype=torch.int64)
    if n == 0:
        return out
    # The edges, exactly: rows [0, h) and [side - h, side) on the whole width, then the columns'
    # rows in between (upsampling a 2-row strip gives the plane's rows bit for bit).
    top = _upsample(low[:, 0:2, :], (2 * f, side))[:, :h]
    bottom = _upsample(low[:, L - 2 :, :], (2 * f, side))[:, -h:]
    left = _upsample(low[:, :, 0:2], (side, 2 * f))[:, h : side - h, :h]
    right = _upsample(low[:, :, L - 2 :], (side, 2 * f))[:, h : side - h, -h:]
    edges = torch.cat([top.reshape(n, -1), bottom.reshape(n, -1), left.reshape(n, -1), right.reshape(n, -1)], 1)
    # The inner cells, from their corners.
    lowest, highest, margin = _corner_range(low)
    straddles = torch.zeros_like(lowest, dtype=torch.bool)
    full = []
    for t in thresholds:
        above = lowest > t + margin
        straddles |= ~above & (highest > t - margin)
        full.append(above)
    where = straddles.nonzero()  # (K, 3): mask, row, column of the cells needing their pixels
    values = _cell_pixels(low, where, f)  # (K, f*f)
    owner = where[:, 0]
    for k, t in enumerate(thresholds):
        whole_cells = (full[k] & ~straddles).flatten(1).sum(1) * (f * f)
        exact = torch.zeros(n, dtype=torch.int64).index_add_(0, owner, (values > t).sum(1))
        out[:, k] = whole_cells + exact + (edges > t).sum(1)
    return out


def _cell_pixels(low: torch.Tensor, where: torch.Tensor, f: int) -> torch.Tensor:
    """The f*f upsampled pixels of each cell (mask, row, column) in ``where``, as the whole plane has them."""
    K = len(where)
    if K == 0:
        return low.new_zeros((0, f * f))
    m, i, j = where.unbind(1)
    per = CELLS_PER_STRIP
    strips = -(-K // per)
    # Strip s holds cells s*per .. s*per + per - 1 as low-resolution columns (2c, 2c + 1): its output
    # columns 2f*c + f/2 .. 2f*c + 3f/2 - 1 lie between them, the plane's weights on the plane's values.
    corners = low.new_zeros((strips * per, 2, 2))
    corners[:K, 0, 0], corners[:K, 0, 1] = low[m, i, j], low[m, i, j + 1]
    corners[:K, 1, 0], corners[:K, 1, 1] = low[m, i + 1, j], low[m, i + 1, j + 1]
    packed = corners.view(strips, per, 2, 2).permute(0, 2, 1, 3).reshape(strips, 2, 2 * per)
    up = _upsample(packed, (2 * f, 2 * f * per))[:, f // 2 : f // 2 + f]  # (strips, f, 2f*per)
    cells = up.view(strips, f, per, 2 * f)[..., f // 2 : f // 2 + f]  # (strips, f, per, f)
    return cells.permute(0, 2, 1, 3).reshape(strips * per, f * f)[:K]
