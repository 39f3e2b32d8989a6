"""Finishing a grid mask only where it can be: the window around the object, not the whole plane.

Steps 3-6 of :mod:`.decode` (upsample, stability, threshold, box, run
lengths) cost the same for every mask on the whole plane, although a nucleus
covers a few thousand of a million pixels. They give the very same numbers
on a window around the mask, because:

* bilinear upsampling makes each output pixel a weighted mean (weights >= 0,
  summing to 1) of its 2 x 2 low-resolution neighbours, so a pixel can lie
  above a threshold only where one of its neighbours does (a small margin
  covers rounding). Outside the window of low-resolution rows and columns
  above the lowest threshold used (stability's ``-offset``), every pixel
  counts for nothing;
* upsampling by an integer factor computes each output pixel from its own
  position and neighbours only, so the window's pixels, upsampled from the
  window with one extra low-resolution row and column around it, are bit
  for bit those of the whole plane (the same argument as the padding crop of
  :mod:`napari_sam.model.postprocess`).

It applies where the masks need no second resize (the image is the model's
input size on its longest side, e.g. 1024 x 1024 for SAM) in SAM's layout
(square low-resolution logits, an integer factor below the input side), and
pays where the window is a small part of the plane (one mask at a time is
slower per pixel than the whole-plane path's batches); other masks and
planes take the whole-plane path of :mod:`.decode`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# Rounding of the bilinear weighted mean is far below this (float32, logits of a few tens at most).
MARGIN = 1e-3


def applies(low_res: torch.Tensor, side: int, input_size, original_size) -> bool:
    """Whether the windowed path gives the whole-plane numbers for these masks."""
    lh, lw = low_res.shape[-2:]
    return lh == lw and side % lw == 0 and (side // lw) % 2 == 0 and tuple(input_size) == tuple(original_size)


def _window(rows_above: torch.Tensor, length: int, limit: int) -> tuple[int, int] | None:
    """Low-res [a, b) around the rows above threshold: every output pixel that may be above lies in [f*a, f*b)."""
    where = torch.nonzero(rows_above)
    if len(where) == 0:
        return None
    k0, k1 = int(where[0]), int(where[-1])
    # An output pixel reads the low-res pixels j0 and j0 + 1 around its position: it may be above only
    # when one of them is, so with one low-res pixel more on each side the window holds them all.
    a, b = max(k0 - 1, 0), min(k1 + 2, length, limit)
    return (a, b) if a < b else None  # None: above only in the padding, which is dropped


def windows_of(low_res: torch.Tensor, side: int, input_size, lowest: float) -> list:
    """Per mask of (N, L, L) low-res logits: its window (a, b, c, d) in low-res pixels, or None when empty.

    ``lowest`` is the lowest threshold the masks are cut at (stability's ``threshold - offset``).
    """
    n, L, _ = low_res.shape
    f = side // L
    h, w = input_size
    limits = -(-h // f), -(-w // f)  # low-res pixels that cover the image, not the padding
    above = low_res > lowest - MARGIN
    rows_above, cols_above = above.any(-1), above.any(-2)
    out = []
    for i in range(n):
        rows = _window(rows_above[i], L, limits[0])
        cols = _window(cols_above[i], L, limits[1]) if rows is not None else None
        out.append(None if rows is None or cols is None else (*rows, *cols))
    return out


def window_pixels(window, side: int, L: int) -> int:
    f = side // L
    return 0 if window is None else (window[1] - window[0]) * (window[3] - window[2]) * f * f


@torch.inference_mode()
def finish_one(low_res: torch.Tensor, window, side: int, input_size, threshold: float, offset: float):
    """One (L, L) mask on its window: (stability, (y0, x0, mask) or None, inclusive box [x0, y0, x1, y1]).

    The numbers equal those of the whole-plane path: stability = IoU of the
    masks thresholded at ``threshold + offset`` and ``threshold - offset``
    (NaN when both are empty, as there), the mask ``> threshold`` inside the
    (h, w) = ``input_size`` plane, its box (zeros when empty).
    """
    if window is None:
        return np.float32(np.nan), None, np.zeros(4, np.int64)
    L = low_res.shape[-1]
    f = side // L
    h, w = input_size
    a, b, c, d = window
    # Upsample [a-1, b+1) x [c-1, d+1) and keep [f*a, f*b) x [f*c, f*d), inside the image: the extra
    # low-res pixel keeps the kept ones' neighbours where the window ends at the image's padding.
    a0, b0, c0, d0 = max(a - 1, 0), min(b + 1, L), max(c - 1, 0), min(d + 1, L)
    up = F.interpolate(low_res[a0:b0, c0:d0][None, None], size=((b0 - a0) * f, (d0 - c0) * f),
                       mode="bilinear", align_corners=False)[0, 0]
    y0, x0 = f * a, f * c
    y1, x1 = min(f * b, h), min(f * d, w)
    # The rest in NumPy: on windows of a few thousand pixels, torch's per-call cost dominates.
    logits = up[y0 - f * a0 : y1 - f * a0, x0 - f * c0 : x1 - f * c0].numpy()
    inner = np.count_nonzero(logits > threshold + offset)
    outer = np.count_nonzero(logits > threshold - offset)
    stability = np.float32(inner) / np.float32(outer) if outer else np.float32(np.nan)  # float32, as torch divides
    mask = logits > threshold
    box = np.zeros(4, np.int64)
    ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if len(ys):
        box[:] = [x0 + xs[0], y0 + ys[0], x0 + xs[-1], y0 + ys[-1]]
    return stability, (y0, x0, mask), box


def encode_window(window, image_hw, offset=(0, 0)) -> np.ndarray:
    """Run lengths (as :func:`.rle.encode`) of a mask that is ``window`` = (y0, x0, mask) and 0 elsewhere.

    ``offset`` (y, x) places the plane (a crop) inside the image of ``image_hw``.
    """
    H, W = image_hw
    if window is None:
        return np.array([H * W], np.int64)
    y0, x0, mask = window
    y0, x0 = y0 + offset[0], x0 + offset[1]
    mh, mw = mask.shape
    # The image read column by column: runs can start or end only in the window's columns. A
    # background pixel above and below each column of the window marks runs at its ends.
    columns = np.zeros((mw, mh + 2), bool)
    columns[:, 1:-1] = np.asarray(mask).T
    col, j = np.nonzero(columns[:, 1:] != columns[:, :-1])  # a run starts (or ends) at row y0 + j
    starts = (col + x0) * H + y0 + j
    # A run ending at the foot of a column and one starting at the head of the next are one run.
    positions, counts = np.unique(starts, return_counts=True)
    positions = positions[(counts % 2 == 1) & (positions > 0) & (positions < H * W)]
    runs = np.diff(np.concatenate(([0], positions, [H * W])))
    starts_with_object = x0 == 0 and y0 == 0 and bool(mask[0, 0])
    return np.concatenate(([0], runs)) if starts_with_object else runs
