"""The prompt for the next slice, derived from the mask found on the slice before.

The box around the previous mask (slightly enlarged, as the object may
grow), a positive point at the mask's most interior pixel (the maximum of
its distance transform, which lies inside the object even when it is
curved) and, optionally, the model's low-resolution mask logits.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ...geometry import interior_point, mask_box
from .slices import SlicePrompt

PROMPT_PARTS = ("box", "point", "mask")
DEFAULT_PROMPT = ("box", "point")


def prompt_from_mask(
    mask: np.ndarray, low_res: np.ndarray | None = None, use: Iterable[str] = DEFAULT_PROMPT, box_margin: float = 0.1
) -> SlicePrompt:
    """The prompt for the next slice from this slice's mask (and low-res logits, if ``"mask"`` is used)."""
    use = set(use)
    box = mask_box(mask, box_margin) if "box" in use else None
    points = labels = None
    if "point" in use:
        points = np.array([interior_point(mask)], dtype=np.float64)
        labels = np.ones(1, dtype=np.int64)
    mask_input = low_res if "mask" in use and low_res is not None else None
    return SlicePrompt(previous_mask=mask, box=box, points=points, point_labels=labels, mask_input=mask_input)
