"""When a walk must stop, and the checked settings that decide it.

A walk stops

* when the mask vanishes (fewer than ``min_area`` pixels): the object ended;
* when the overlap (IoU) between the new mask and the previous slice's mask
  falls under ``iou_threshold``: the model jumped to something else, or the
  object changes too fast between slices to be followed safely;
* at the end of the stack (or ``max_distance`` slices from its annotation);
* optionally (``max_regrowth``), when the mask, after shrinking on its way
  from the annotation, grows again by more than that fraction above the
  smallest area seen: for convex objects such as nuclei this means the walk
  slid into the next object stacked along z, which a consecutive-slice IoU
  cannot see (the hand-over is gradual). Off by default, as cells with
  branches or waists legitimately grow again.
"""

from __future__ import annotations

import numpy as np

from ...geometry import mask_iou
from .prompting import PROMPT_PARTS

DEFAULT_IOU_THRESHOLD = 0.25


def refusal(settings: dict, previous: np.ndarray, smallest_area: int, mask: np.ndarray) -> tuple[str | None, dict]:
    """Why the walk refuses ``mask`` after ``previous`` (None if it takes it), with the figures that decided."""
    area = int(np.count_nonzero(mask))
    if area < settings["min_area"]:
        return "vanished", {"area": area}
    iou = mask_iou(previous, mask)
    if iou < settings["iou_threshold"]:
        return "iou_below_threshold", {"area": area, "iou": iou}
    regrowth = settings["max_regrowth"]
    if regrowth is not None and area > (1.0 + regrowth) * smallest_area:
        return "regrowth", {"area": area, "iou": iou}
    return None, {"area": area, "iou": iou}


def check_settings(iou_threshold, min_area, prompt, box_margin, max_distance, max_regrowth=None) -> dict:
    try:
        iou_threshold = float(iou_threshold)
    except (TypeError, ValueError):
        raise TypeError(f"iou_threshold must be a number between 0 and 1, got {iou_threshold!r}") from None
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be between 0 and 1, got {iou_threshold}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ValueError(f"min_area must be a whole number of pixels >= 1, got {min_area!r}")
    if isinstance(prompt, str):
        prompt = (prompt,)
    prompt = tuple(prompt)
    unknown = [p for p in prompt if p not in PROMPT_PARTS]
    if unknown or not prompt:
        raise ValueError(f"prompt must be some of {PROMPT_PARTS}, got {prompt!r}")
    if prompt == ("mask",):
        raise ValueError("a mask prompt alone cannot start from a painted annotation; add 'box' or 'point'")
    try:
        box_margin = float(box_margin)
    except (TypeError, ValueError):
        raise TypeError(f"box_margin must be a number, got {box_margin!r}") from None
    if not 0.0 <= box_margin <= 1.0:
        raise ValueError(f"box_margin must be between 0 and 1 (a fraction of the box size), got {box_margin}")
    if max_distance is not None and (
        isinstance(max_distance, bool) or not isinstance(max_distance, (int, np.integer)) or max_distance < 1
    ):
        raise ValueError(f"max_distance must be a positive number of slices or None, got {max_distance!r}")
    if max_regrowth is not None:
        try:
            max_regrowth = float(max_regrowth)
        except (TypeError, ValueError):
            raise TypeError(f"max_regrowth must be a number or None, got {max_regrowth!r}") from None
        if not (np.isfinite(max_regrowth) and max_regrowth >= 0):
            raise ValueError(f"max_regrowth must be a fraction >= 0 (e.g. 0.25) or None, got {max_regrowth}")
    return {
        "max_regrowth": max_regrowth,
        "iou_threshold": iou_threshold,
        "min_area": int(min_area),
        "prompt": prompt,
        "box_margin": box_margin,
        "max_distance": max_distance,
    }
