"""Tuning the automatic settings on labelled images: the thresholds that give the best mSA.

Only filtering settings are tuned (predicted-IoU and stability thresholds,
box NMS): each candidate re-filters the grids decoded once per image
(:meth:`AutomaticMaskGenerator.filter`), so the model runs once per image
whatever the number of candidates. Ties keep the earlier candidate of
:data:`GRID`; the base settings (the model's recommended ones) are tried
first, so they stay when nothing beats them.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..auto.labels import masks_to_labels
from ..auto.metrics import mean_segmentation_accuracy
from ..auto.settings import AutoSettings

GRID = {
    "pred_iou_thresh": (0.5, 0.6, 0.7, 0.8, 0.88),
    "stability_score_thresh": (0.8, 0.88, 0.92, 0.95),
    "box_nms_thresh": (0.3, 0.5, 0.7),
}


def candidates(base: dict, grid: dict = GRID) -> list[dict]:
    """The base settings first, then every combination of the grid over them."""
    names = list(grid)
    combos = [dict(base)]
    for values in itertools.product(*(grid[n] for n in names)):
        combos.append({**base, **dict(zip(names, values))})
    return combos


def tune_auto_settings(generator, grids, truths, base: dict | None = None, grid: dict = GRID) -> dict:
    """The settings (``base`` with the grid's thresholds) of the highest mean mSA over the images."""
    if len(grids) != len(truths) or not grids:
        raise ValueError(f"tuning needs one decoded grid per labelled image, got {len(grids)} and {len(truths)}")
    # The base's thresholds written out (Segment Anything's defaults where it has none), so the
    # result always names every tuned setting.
    defaults = AutoSettings()
    base = {**{name: getattr(defaults, name) for name in grid}, **dict(base or {})}
    best, best_score = base, -1.0
    for settings in candidates(base, grid):
        changes = {k: v for k, v in settings.items() if k in grid or k == "min_mask_region_area"}
        scores = []
        for decoded, truth in zip(grids, truths):
            proposals, _ = masks_to_labels(generator.filter(decoded, **changes), np.shape(truth))
            scores.append(mean_segmentation_accuracy(truth, proposals))
        score = float(np.mean(scores))
        if score > best_score + 1e-12:
            best, best_score = settings, score
    return best
