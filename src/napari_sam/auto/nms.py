"""Greedy non-maximum suppression of boxes: of two overlapping proposals keep the better one.

The same rule as torchvision's ``batched_nms`` with one category, which
Segment Anything uses: visit boxes by decreasing score (ties in their given
order), keep a box unless its IoU with an already kept box exceeds
``iou_threshold``. Boxes are ``[x0, y0, x1, y1]``, area ``(x1-x0)*(y1-y0)``.
"""

from __future__ import annotations

import numpy as np


def box_nms(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Indices of the kept boxes, best score first."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)  # float32, as the reference compares them
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    x0, y0, x1, y1 = b.T
    areas = (x1 - x0) * (y1 - y0)
    suppressed = np.zeros(len(b), dtype=bool)
    keep = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for i in range(len(b)):
            if suppressed[i]:
                continue
            keep.append(i)
            rest = slice(i + 1, None)
            w = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
            h = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
            inter = w * h
            iou = inter / (areas[i] + areas[rest] - inter)
            suppressed[rest] |= iou > iou_threshold
    return order[np.asarray(keep, dtype=np.int64)]
