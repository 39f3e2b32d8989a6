"""What the walk asks of one slice and what it gets back.

The model is reached through a small protocol, :class:`SliceSegmenter`
(``segment(slice_index, prompt) -> SliceSegmentation``), so the walking and
stopping logic can be tested with an oracle that answers with the true
object; :class:`~.sam_slices.SamSliceSegmenter` answers with SAM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SlicePrompt:
    """What the next slice is asked with, all derived from the previous slice's mask."""

    previous_mask: np.ndarray  # (H, W) bool, the mask the prompt comes from
    box: np.ndarray | None = None  # (4,) x0, y0, x1, y1 in pixels
    points: np.ndarray | None = None  # (N, 2) as (x, y)
    point_labels: np.ndarray | None = None  # (N,) 1 = object
    mask_input: np.ndarray | None = None  # (1, h, w) low-res logits of the previous slice
    expected_mask: np.ndarray | None = None  # (H, W) bool: the previous mask grown/shrunk as the object changes


@dataclass(frozen=True)
class SliceSegmentation:
    mask: np.ndarray  # (H, W) bool
    low_res: np.ndarray | None = None  # (1, h, w) logits, usable as the next mask_input
    score: float = float("nan")  # the model's own quality estimate, if it has one


@runtime_checkable
class SliceSegmenter(Protocol):
    def segment(self, index: int, prompt: SlicePrompt) -> SliceSegmentation: ...


def check_answer(seg, shape, z) -> np.ndarray:
    """The segmenter's mask for slice ``z`` as a bool plane, refusing answers of the wrong kind or shape."""
    if not isinstance(seg, SliceSegmentation):
        raise TypeError(f"the segmenter must return a SliceSegmentation, got {type(seg).__name__}")
    mask = np.asarray(seg.mask)
    if mask.shape != shape:
        raise ValueError(f"the segmenter returned a mask of shape {mask.shape} for slice {z}, expected {shape}")
    return mask.astype(bool, copy=False)
