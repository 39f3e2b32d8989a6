"""Masks at the input size without upsampling their insides: only the bands along the edges are interpolated.

A click's masks are the decoder's low-res logits (256 x 256 for SAM)
upsampled 4x bilinearly and thresholded at 0. Every output pixel is a
weighted mean, with weights >= 0, of at most 2 x 2 neighbouring logits: if
all four are positive the pixel is in the mask, if none is, it is out,
whatever the weights. Only pixels whose neighbourhood holds both signs (the
mask's edge) need the interpolation. On a 1024 x 1024 image the whole planes
took 3 ms of a 28 ms vit_b click (three float32 planes of 4 MB upsampled,
then compared); the three masks of one nucleus take 0.8 ms in bands (2-core
AMD EPYC, AVX2 emulated and native alike).

Here the "cells" are the blocks of output pixels that share one 2 x 2
neighbourhood. Rows of cells that are all sure are written straight from
their sign, and the rows of cells with an edge in them are interpolated as
bands, by the same torch kernel on the same neighbours. Bilinear
interpolation by a power-of-two factor is the same on a band of rows as on
the whole plane (the band's weights are computed from exact binary
fractions), so the result is identical bit for bit;
tests/model/test_edge_bands.py checks it against the whole plane, also near
0 and with NaN.

An image half the encoder's input side (512 px for SAM) is one more step,
the upsampled plane halved bilinearly: each halved row is the mean of two
upsampled rows of one cell, so the same reasoning holds, and bands are halved
as the whole plane would be (three masks of one nucleus at 512 px: 3.2 ->
1.0 ms with AVX2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# A positive logit smaller than this could round to 0 when weighted (the smallest weight of a 4x upsampling
# is 1/8); cells holding one are interpolated, never taken as sure.
SURE_ABOVE = 1e-30
# A plane whose edges run through more than this share of its cell rows (noise, or a mask of random
# weights) is upsampled whole, in one band: many bands would cost more. If every plane is like that, the
# caller upsamples them all in one call (finding that out took 0.1 ms).
MOST_ROWS = 0.5
# Runs of edge rows this close are one band: each call of the kernel costs about as much as 8 more rows
# (random weights' masks, edges in scattered rows, came out 128 bands per click and slower than whole).
JOIN_GAP = 8
# torch interpolates outputs whose height + width is at most 128 with another kernel (channels-last,
# vectorised), whose rounding may differ from the one used on whole planes: bands stay above this.
_OTHER_KERNEL_SIDES = 128


def masks_from_edge_bands(low_res: torch.Tensor, factor: int, size: tuple[int, int],
                          halve: bool = False) -> torch.Tensor | None:
    """The masks of (B, C, n, m) float CPU logits upsampled by ``factor`` and cropped to ``size`` (h, w),
    each plane's ``F.interpolate(...)[:h, :w] > 0``; with ``halve``, of that crop resized bilinearly to
    (h/2, w/2) (an image half the encoder's input side, 512 px for SAM). None where this shortcut does
    not apply or would not pay: then the caller upsamples the whole plane.

    It applies to float32 and bfloat16 logits, power-of-two factors and masks wider than 128 pixels.
    """
    B, C, n, m = low_res.shape
    h, w = size
    H, W = (h // 2, w // 2) if halve else (h, w)
    if (low_res.device.type != "cpu" or low_res.dtype not in (torch.float32, torch.bfloat16) or factor < 2
            or factor & (factor - 1) or W <= _OTHER_KERNEL_SIDES or n < 2 or h > factor * n or w > factor * m
            or (halve and (h % 2 or w % 2))):
        return None
    planes = low_res.reshape(B * C, n, m)
    inside, edge = _cell_rows(planes)
    bands = [_bands(rows, n) for rows in edge]
    if all(b is None for b in bands):
        return None
    # Rows of cells without an edge are wholly in or wholly out: a cell surely in beside one surely out
    # would share a neighbour that is both. Halved, a row is the mean of two upsampled rows (2Y, 2Y + 1)
    # with weights 1/2, and those two always lie in one cell.
    half = factor // 2
    row_inside = inside.repeat_interleave(factor, dim=1)[:, half:half + h]
    if halve:
        row_inside = row_inside[:, ::2]
    out = row_inside[:, :, None].expand(B * C, H, W).contiguous()
    for p, runs in enumerate(bands):
        for a0, a1 in [(0, n)] if runs is None else runs:
            # Cell row a covers upsampled rows factor*a - half .. factor*a + half - 1 and reads source
            # rows a - 1 and a (clamped at the plane's ends). The band reads one more row on each side,
            # so that its own ends, which torch clamps, are never among the rows kept. Its first and
            # last rows are even: halving a band then pairs the same rows as halving the whole plane.
            y0, y1 = max(factor * a0 - half, 0), min(factor * a1 + half, h)
            if y0 >= y1:
                continue  # rows of the padding, cropped away
            r0, r1 = max(a0 - 1, 0), min(a1 + 1, n)
            band = F.interpolate(planes[p, r0:r1][None, None], size=(factor * (r1 - r0), factor * m),
                                 mode="bilinear", align_corners=False)[:, :, y0 - factor * r0:y1 - factor * r0, :w]
            if halve:
                band = F.interpolate(band, size=((y1 - y0) // 2, W), mode="bilinear", align_corners=False)
                y0, y1 = y0 // 2, y1 // 2
            out[p, y0:y1] = band[0, 0] > 0
    return out.view(B, C, H, W)


def _cell_rows(planes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row of cells, (planes, n + 1): every pixel surely in; and an edge somewhere (neither wholly
    in nor wholly out, or a NaN). Cell row a reads source rows a - 1 and a, the end rows twice."""
    # Minima and maxima along the rows: 15x faster than all() of a compared plane. Both carry a NaN on.
    row_in = planes.amin(-1) > SURE_ABOVE
    row_out = planes.amax(-1) <= 0
    inside = _both(row_in)
    return inside, ~(inside | _both(row_out))


def _both(rows: torch.Tensor) -> torch.Tensor:
    """(P, n) -> (P, n + 1): rows a - 1 and a both true, clamped at the ends."""
    return torch.cat([rows[:, :1], rows[:, :-1] & rows[:, 1:], rows[:, -1:]], 1)


def _bands(edge_rows: torch.Tensor, n: int) -> list[tuple[int, int]] | None:
    """(first, last) cell rows of each band of one plane: runs of rows with an edge, joined across gaps
    of up to JOIN_GAP rows (a band's own cost is that of about 8 rows); None (the whole plane in one)
    where the bands would cover more than MOST_ROWS of it."""
    indices = torch.nonzero(edge_rows).flatten().tolist()
    if len(indices) > MOST_ROWS * (n + 1):
        return None  # edges in most rows already: no need to look for the runs (noise: 0.3 ms)
    if not indices:
        return []
    runs, start = [], indices[0]
    for prev, this in zip(indices, indices[1:]):
        if this - prev > JOIN_GAP:
            runs.append((start, prev))
            start = this
    runs.append((start, indices[-1]))
    if sum(a1 - a0 + 3 for a0, a1 in runs) > MOST_ROWS * (n + 1):  # + the two rows each band reads beyond
        return None
    return runs
