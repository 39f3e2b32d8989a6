"""Two optional steps after a crop's NMS: merge each kept mask with its duplicates, then fill the gaps.

Segment Anything keeps, of the many near-identical masks that the grid points
inside one object give, the one with the best predicted IoU, and drops the
candidates that fail the thresholds even where nothing else covers the image.
On the shipped demo model's nuclei that loses twice (``bench_auto_quality.py``):

* the kept mask is often not the best of its duplicates at the rim: a pixel
  majority of the duplicates is closer to the object than any one of them;
* about one nucleus in ten is missed outright although a candidate with IoU
  0.8-0.9 against it was decoded: its predicted IoU (0.4-0.8) or stability
  (0.5-0.9) fell short, and no kept mask covers it.

Both steps are off by default (``merge_duplicates_iou=0``,
``gap_fill_iou_thresh=0``): at Segment Anything's settings the generator's
output stays the reference's. They only select and combine decoded
candidates, so they re-filter like the thresholds, without decoding again.
Candidates are kept as run lengths and are decoded one at a time, so memory
stays one plane per mask, whatever the grid.
"""

from __future__ import annotations

import numpy as np

from . import rle
from .decode import CropCandidates
from .nms import box_nms

#: A pixel belongs to the merged mask when at least this share of the duplicates hold it (a majority).
MERGE_VOTE = 0.5
#: A gap candidate is kept only if at most this share of its pixels is covered already. Measured on 10
#: generated tuning images (mSA): 0.1 -> 0.733, 0.2 -> 0.750, 0.3 -> 0.742.
GAP_COVERED_AT_MOST = 0.2


def merged_masks(crop: CropCandidates, kept: np.ndarray, pool: np.ndarray, min_iou: float) -> list[np.ndarray]:
    """For each kept candidate, the pixel majority of it and its duplicates in ``pool`` (mask IoU > ``min_iou``).

    ``kept`` and ``pool`` index the crop's candidates (``pool``: those that
    passed the thresholds). Returns bool masks of the whole image.
    """
    areas = np.array([rle.area(crop.rles[i]) for i in pool], dtype=np.int64)
    boxes = crop.boxes[pool]
    out = []
    for k in kept:
        own = rle.decode(crop.rles[k], crop.image_hw)
        own_area = int(own.sum())
        # A mask's IoU with another is at most the pixels their boxes share over the larger area:
        # only the candidates this bound lets through are decoded.
        shared = _inclusive_overlap(crop.boxes[k], boxes)
        maybe = pool[shared > min_iou * np.maximum(areas, own_area)]
        votes = own.astype(np.int32)
        members = 1
        for j in maybe[maybe != k]:
            other = rle.decode(crop.rles[j], crop.image_hw)
            inter = int(np.count_nonzero(own & other))
            if inter / (own_area + int(other.sum()) - inter) > min_iou:
                votes += other
                members += 1
        out.append(votes >= MERGE_VOTE * members if members > 1 else own)
    return out


def gap_fillers(crop: CropCandidates, covered: np.ndarray, candidates: np.ndarray, scores: np.ndarray,
                nms_thresh: float) -> list[tuple[int, np.ndarray]]:
    """``(index, mask)`` of the ``candidates`` that fill what ``covered`` leaves open, best score first.

    The candidates (those that failed the thresholds but pass the gap's own
    floor) go through box NMS among themselves; each survivor is kept when at
    most :data:`GAP_COVERED_AT_MOST` of it is covered by the masks kept so
    far, without the covered pixels, and then covers its own. ``covered`` is
    updated in place.
    """
    order = candidates[box_nms(crop.boxes[candidates], scores[candidates], nms_thresh)]
    out = []
    for i in order:
        mask = rle.decode(crop.rles[i], crop.image_hw)
        area = int(mask.sum())
        if area and np.count_nonzero(mask & covered) <= GAP_COVERED_AT_MOST * area:
            mask &= ~covered  # only what was open: the masks kept before keep every pixel
            covered |= mask
            out.append((int(i), mask))
    return out


def _inclusive_overlap(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Pixels shared by an inclusive box ``[x0, y0, x1, y1]`` and each of ``boxes``."""
    w = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1
    h = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1
    return np.clip(w, 0, None) * np.clip(h, 0, None)
