"""When a walk must stop, and the checked settings that decide it.

A walk stops

* when the mask vanishes: fewer than ``min_area`` pixels, or (``vanish_fraction``)
  a smaller part than that of the largest cross-section the walk has seen — the
  object ended. Relative to the object's own size, so a large nucleus ending in a
  wisp of a few dozen pixels and a small one ending in a few pixels both stop;
* on a jump: the new mask overlaps the previous one too little, measured as
  IoU (``overlap="iou"``, the old rule) or as the part of the *smaller* of the
  two masks that lies in the other (``overlap="smaller"``). A pole's small
  cross-section lies inside the larger one before it, which an IoU between a
  large and a small slice calls a jump; the share of the smaller one does not;
* at the end of the stack (or ``max_distance`` slices from its annotation);
* (``signal_valley``, with the signal fit) when, past the object's widest slice,
  the signal inside the mask rises again by a tenth of the annotated slice's:
  the walk crossed the dim gap into the next object stacked along z;
* optionally (``max_regrowth``), when the mask, after shrinking on its way
  from the annotation, grows again by more than that fraction above the
  smallest area seen (another object stacked along z?). Off by default, as
  cells with branches or waists legitimately grow again.

Defaults (preset "object"), and why they need no tuning per stack:

* vanishing: ``min_area=1`` and ``vanish_fraction=0`` — with the signal fit
  the blurred ghost beyond an object's end is cut away, so the mask itself
  vanishes there; a fraction of the largest cross-section (0.05) brought no
  gain (bench_propagation.py's ablation row). Nor did a stop on the area
  trend (the last two slices predicting fewer than 9 or 25 pixels next:
  Propagate all's mean 3D IoU 0.852 and 0.851 against 0.853,
  benchmarks/_diag_ends.py), nor one on a faded signal (true pole slices and
  ghosts both hold about 0.45 to 0.65 of the annotation's signal there);
* Propagate all also stops a walk whose mask grows to twice the smallest it
  had (``max_regrowth=1.0``, objects.py): each object is clicked on a wide slice;
* a jump: ``overlap="smaller"`` below 0.25 — three quarters of the smaller
  mask outside the other is another object, not a pole, for any object size;
  the model's pixel noise stays far below that;
* past the widest slice, the signal rising again by a tenth of the
  annotation's contrast (``signal_valley``): relative to the object's own
  signal, so it holds for dim and bright stacks alike.

The per-slice reach allowed past the widest slice (:mod:`.shaping`) scales
with the distance between slices (``z_spacing``, :mod:`.anisotropy`).
"""

from __future__ import annotations

import numpy as np

from .anisotropy import check_z_spacing
from .prompting import PROMPT_PARTS

DEFAULT_IOU_THRESHOLD = 0.25
DEFAULT_VANISH_FRACTION = 0.05
OVERLAPS = ("iou", "smaller")


def overlap(previous: np.ndarray, mask: np.ndarray, how: str) -> float:
    inter = np.count_nonzero(previous & mask)
    if how == "smaller":
        smaller = min(np.count_nonzero(previous), np.count_nonzero(mask))
        return inter / smaller if smaller else 1.0
    union = np.count_nonzero(previous | mask)
    return inter / union if union else 1.0


def refusal(settings: dict, previous: np.ndarray, smallest_area: int, mask: np.ndarray,
            largest_area: int | None = None) -> tuple[str | None, dict]:
    """Why the walk refuses ``mask`` after ``previous`` (None if it takes it), with the figures that decided."""
    area = int(np.count_nonzero(mask))
    largest = max(largest_area or 0, int(np.count_nonzero(previous)))
    if area < settings["min_area"] or area < settings["vanish_fraction"] * largest:
        return "vanished", {"area": area}
    iou = overlap(previous, mask, settings["overlap"])
    if iou < settings["iou_threshold"]:
        return "iou_below_threshold", {"area": area, "iou": iou}
    regrowth = settings["max_regrowth"]
    if regrowth is not None and area > (1.0 + regrowth) * smallest_area:
        return "regrowth", {"area": area, "iou": iou}
    return None, {"area": area, "iou": iou}


def _fraction(name, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value}")
    return value


def check_settings(iou_threshold, min_area, prompt, box_margin, max_distance, max_regrowth=None, *,
                   vanish_fraction=0.0, overlap="iou", fit_signal=False, shrink=False,
                   signal_valley=False, z_spacing=None) -> dict:
    iou_threshold = _fraction("iou_threshold", iou_threshold)
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 1:
        raise ValueError(f"min_area must be a whole number of pixels >= 1, got {min_area!r}")
    if isinstance(prompt, str):
        prompt = (prompt,)
    prompt = tuple(prompt)
    unknown = [p for p in prompt if p not in PROMPT_PARTS]
    if unknown or not prompt:
        raise ValueError(f"prompt must be some of {PROMPT_PARTS}, got {prompt!r}")
    if not {"box", "point", "points"} & set(prompt):
        raise ValueError(f"a prompt of {prompt!r} cannot start from a painted annotation; add 'box' or 'point'")
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
    if overlap not in OVERLAPS:
        raise ValueError(f"overlap must be one of {OVERLAPS}, got {overlap!r}")
    for name, value in (("fit_signal", fit_signal), ("shrink", shrink), ("signal_valley", signal_valley)):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    return {
        "max_regrowth": max_regrowth,
        "iou_threshold": iou_threshold,
        "min_area": int(min_area),
        "prompt": prompt,
        "box_margin": box_margin,
        "max_distance": max_distance,
        "vanish_fraction": _fraction("vanish_fraction", vanish_fraction),
        "overlap": overlap,
        "fit_signal": bool(fit_signal),
        "shrink": bool(shrink),
        "signal_valley": bool(signal_valley),
        "z_spacing": check_z_spacing(z_spacing),
    }
