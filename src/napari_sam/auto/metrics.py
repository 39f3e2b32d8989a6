"""Mean segmentation accuracy (mSA), the instance-segmentation score of the cell-segmentation literature.

At an IoU threshold t, predicted and true objects are matched one to one
(the assignment of largest total IoU among pairs with IoU >= t); the
accuracy is TP / (TP + FP + FN). mSA is its mean over t = 0.5, 0.55, ...,
0.95 (as micro-sam reports it). Works on 2D and 3D label images alike.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))


def iou_matrix(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """IoU of every true object (rows, labels in increasing order) with every predicted one (columns)."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if truth.shape != predicted.shape:
        raise ValueError(f"the label images differ in shape: {truth.shape} and {predicted.shape}")
    t_ids, t = np.unique(truth, return_inverse=True)
    p_ids, p = np.unique(predicted, return_inverse=True)
    overlap = np.bincount(t.ravel() * len(p_ids) + p.ravel(), minlength=len(t_ids) * len(p_ids))
    overlap = overlap.reshape(len(t_ids), len(p_ids)).astype(np.float64)
    union = overlap.sum(1)[:, None] + overlap.sum(0)[None, :] - overlap
    iou = overlap / np.maximum(union, 1)
    return iou[t_ids > 0][:, p_ids > 0]


def accuracy_at(iou: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """(TP, FP, FN) at one IoU threshold."""
    n_true, n_pred = iou.shape
    if n_true == 0 or n_pred == 0:
        return 0, n_pred, n_true
    score = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(-score)
    tp = int((score[rows, cols] > 0).sum())
    return tp, n_pred - tp, n_true - tp


def mean_segmentation_accuracy(truth, predicted) -> float:
    iou = iou_matrix(truth, predicted)
    scores = []
    for t in THRESHOLDS:
        tp, fp, fn = accuracy_at(iou, t)
        scores.append(tp / (tp + fp + fn) if tp + fp + fn else 1.0)
    return float(np.mean(scores))


def found_fraction(truth, predicted, threshold: float = 0.5) -> float:
    """The share of true objects matched at IoU >= ``threshold``."""
    iou = iou_matrix(truth, predicted)
    tp, _, fn = accuracy_at(iou, threshold)
    return tp / (tp + fn) if tp + fn else 1.0
