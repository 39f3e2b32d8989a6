"""Uncompressed run-length encoding of masks, in the layout COCO and Segment Anything use.

A mask of H x W pixels is read column by column (Fortran order); ``counts``
alternate runs of background and object pixels, starting with background
(a mask whose first pixel is object starts with a run of 0). The generator
keeps every candidate this way: a nucleus of a 1024 x 1024 plane takes a few
hundred numbers instead of a megabyte.
"""

from __future__ import annotations

import numpy as np
import torch


def encode(masks: torch.Tensor) -> list[np.ndarray]:
    """Run lengths (int64 arrays) of each mask of a bool (N, H, W) tensor."""
    n, h, w = masks.shape
    if n == 0:
        return []
    flat = masks.transpose(1, 2).reshape(n, h * w)
    changes = (flat[:, 1:] ^ flat[:, :-1]).nonzero()  # (k, 2): mask, position before a change
    per_mask = torch.bincount(changes[:, 0], minlength=n).tolist()
    positions = (changes[:, 1] + 1).cpu().numpy()
    starts_with_object = flat[:, 0].cpu().numpy()
    out, at = [], 0
    for i in range(n):
        edges = np.concatenate(([0], positions[at : at + per_mask[i]], [h * w]))
        at += per_mask[i]
        runs = np.diff(edges)
        out.append(np.concatenate(([0], runs)) if starts_with_object[i] else runs)
    return out


def decode(counts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The bool (H, W) mask of one run-length encoding."""
    h, w = size
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != h * w or (counts < 0).any():
        raise ValueError(f"these run lengths cover {int(counts.sum())} pixels, not the {h} x {w} = {h * w} of the mask")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(w, h).T


def area(counts: np.ndarray) -> int:
    return int(np.sum(counts[1::2]))


def to_dict(counts: np.ndarray, size: tuple[int, int]) -> dict:
    """Segment Anything's ``uncompressed_rle`` form: ``{"size": [H, W], "counts": [...]}``."""
    return {"size": [int(size[0]), int(size[1])], "counts": [int(c) for c in counts]}


def from_dict(rle: dict) -> np.ndarray:
    """The bool mask of an ``uncompressed_rle`` dict; ValueError when it is not one."""
    try:
        size, counts = rle["size"], rle["counts"]
    except (TypeError, KeyError):
        raise ValueError("an uncompressed RLE is a dict with 'size' [H, W] and 'counts' [runs]") from None
    if isinstance(counts, (str, bytes)):
        raise ValueError("this RLE is compressed (COCO strings); decode it with pycocotools")
    return decode(np.asarray(counts), tuple(size))
