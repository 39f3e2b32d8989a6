"""Which proposals are confident (accept them all with one key) and which are unsure (look at each).

Segment Anything's data engine filled in its confident masks automatically
and left the annotators the rest. A proposal is **confident** when three
things agree:

1. the model's own predicted IoU is high;
2. the mask is stable: it barely changes when the logit threshold moves;
3. several grid points found it: other points of the grid produced a mask
   with (nearly) the same box. A mask that only one point produced is often a
   part of an object, or two objects merged, seen from one awkward point.

The defaults were chosen on generated nuclei with the demo model at its
recommended settings (24 points per side on 256 x 256 images;
``benchmarks/bench_confident.py``): on 20 tuning images 97 % of the proposals
they call confident have IoU >= 0.9 with a true nucleus (51 % of the
proposals are called confident), on 20 held-out images 98.5 % (58 %).
Without the agreement step, about the same precision (98.1 %) needs
predicted IoU >= 0.9 and stability >= 0.95, and calls only 47 % confident. Agreement is counted in
grid points, so a much sparser grid (fewer points per object) calls fewer
proposals confident. A model trained on other data may need other values;
the rule is a plain dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ConfidenceRule:
    """A proposal is confident when its predicted IoU, stability and grid agreement all reach these."""

    min_predicted_iou: float = 0.85
    min_stability: float = 0.93
    #: How many grid points must have produced (nearly) this mask, itself included.
    min_agreement: int = 8
    #: Two boxes with at least this IoU count as the same mask for agreement.
    same_box_iou: float = 0.85

    def __post_init__(self) -> None:
        for name in ("min_predicted_iou", "min_stability", "same_box_iou"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"ConfidenceRule.{name} must be a number in [0, 1], got {value!r}")
        if not isinstance(self.min_agreement, (int, np.integer)) or self.min_agreement < 1:
            raise ValueError(f"ConfidenceRule.min_agreement must be a whole number >= 1 (grid points), "
                             f"got {self.min_agreement!r}")

    def is_confident(self, record: dict, agreement: int) -> bool:
        return (record["predicted_iou"] >= self.min_predicted_iou and record["stability_score"] >= self.min_stability
                and agreement >= self.min_agreement)


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one inclusive box [x0, y0, x1, y1] with each of ``boxes`` (same convention)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0 + 1, 0, None) * np.clip(y1 - y0 + 1, 0, None)
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return inter / np.maximum(area + areas - inter, 1)


def agreement(record: dict, decoded, rule: ConfidenceRule = ConfidenceRule()) -> int:
    """How many grid points of ``decoded`` produced a mask with nearly the box of ``record``.

    Boxes stand for masks here: comparing every candidate's mask would mean
    decoding thousands of run lengths per slice, and a nucleus's box is
    already specific. Only candidates the model itself rates (predicted IoU
    above 0.5) vote.
    """
    x, y, w, h = record["bbox"]
    box = np.array([x, y, x + w, y + h], dtype=np.float64)
    voters = set()
    for crop in decoded.crops:
        if not len(crop):
            continue
        same = (_box_iou(box, crop.boxes.astype(np.float64)) >= rule.same_box_iou) & (crop.iou > 0.5)
        voters.update(map(tuple, np.round(crop.points[same], 3)))
    return max(1, len(voters))  # the record's own point, even when post-processing changed its box


def confident_flags(records: list[dict], decoded, rule: ConfidenceRule = ConfidenceRule()) -> list[bool]:
    """For each record (a generator record of ``decoded``): is it confident under ``rule``?"""
    return [rule.is_confident(r, agreement(r, decoded, rule)) for r in records]
