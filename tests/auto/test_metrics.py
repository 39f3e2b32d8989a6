import numpy as np
import pytest

from napari_sam.auto.metrics import found_fraction, mean_segmentation_accuracy


def test_perfect_and_renumbered_segmentations_score_one():
    truth = np.zeros((20, 20), int)
    truth[2:8, 2:8], truth[10:18, 10:18] = 1, 2
    assert mean_segmentation_accuracy(truth, truth) == 1.0
    assert mean_segmentation_accuracy(truth, np.where(truth > 0, 9 - truth, 0)) == 1.0


def test_partial_matches_count_per_threshold():
    truth = np.zeros((10, 20), int)
    truth[:, :10] = 1
    pred = np.zeros_like(truth)
    pred[:, :7] = 5  # IoU 0.7: a match at 0.5 .. 0.7, a FP and a FN above
    pred[:, 15:] = 6  # a false positive everywhere
    # t <= 0.7 (5 thresholds): TP 1, FP 1 -> 1/2; t > 0.7 (5): TP 0, FP 2, FN 1 -> 0
    assert mean_segmentation_accuracy(truth, pred) == pytest.approx(0.25)
    assert found_fraction(truth, pred) == 1.0
    assert mean_segmentation_accuracy(truth, np.zeros_like(truth)) == 0.0
