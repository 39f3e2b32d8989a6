import numpy as np
import pytest
import torch

from napari_sam.model import SamPredictor, build_sam
from napari_sam.model.build import tiny_config
from helpers import randomize_, structured_rgb


@pytest.fixture(scope="module")
def predictor():
    model = randomize_(build_sam(tiny_config(128)), seed=4).eval()
    p = SamPredictor(model, device="cpu", precision="fp32")
    p.set_image(structured_rgb(90, 120, seed=2))
    return p


def test_a_batch_equals_separate_predictions(predictor):
    rng = np.random.default_rng(0)
    points = rng.uniform([0, 0], [120, 90], size=(5, 2, 2))
    labels = np.array([[1, 0], [1, 1], [1, 0], [0, 1], [1, -1]])
    low_res, iou = predictor.predict_batch(points, labels, multimask_output=True)
    assert low_res.shape[:2] == (5, 3) and iou.shape == (5, 3)
    for b in range(5):
        _, one_iou, one_low = predictor.predict(point_coords=points[b], point_labels=labels[b])
        np.testing.assert_allclose(low_res[b].numpy(), one_low, rtol=0, atol=1e-4)
        np.testing.assert_allclose(iou[b].numpy(), one_iou, rtol=0, atol=1e-5)
    assert not torch.allclose(low_res[0], low_res[1])  # different prompts, different masks


def test_single_mask_output(predictor):
    low_res, iou = predictor.predict_batch(np.array([[[10.0, 20.0]]]), np.array([[1]]), multimask_output=False)
    assert low_res.shape[:2] == (1, 1) and iou.shape == (1, 1)


@pytest.mark.parametrize("points, labels, message", [
    (np.zeros((3, 2)), np.ones((3,)), "prompts, points, 2"),
    (np.zeros((3, 1, 2)), np.ones((3, 2)), "point_labels must be"),
    (np.full((1, 1, 2), 500.0), np.ones((1, 1)), "outside"),
])
def test_bad_batches_are_refused(predictor, points, labels, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict_batch(points, labels)


def test_iou_floor_makes_only_the_surviving_prompts_masks_and_the_same_numbers(predictor):
    rng = np.random.default_rng(3)
    points = rng.uniform([0, 0], [120, 90], size=(12, 1, 2))
    labels = np.ones((12, 1))
    full_low, full_iou = predictor.predict_batch(points, labels)
    floor = float(np.median(full_iou.numpy().max(-1)))  # about half the prompts survive
    low, iou, rows = predictor.predict_batch(points, labels, iou_floor=floor)
    expected = np.flatnonzero((full_iou.numpy() > floor).any(-1))
    assert 0 < len(expected) < 12
    np.testing.assert_array_equal(rows.numpy(), expected)
    np.testing.assert_array_equal(iou.numpy(), full_iou.numpy())
    assert low.shape[0] == len(expected)
    np.testing.assert_allclose(low.numpy(), full_low[expected].numpy(), rtol=0, atol=1e-5)


def test_iou_floor_above_every_candidate_makes_no_masks(predictor):
    low, iou, rows = predictor.predict_batch(np.array([[[10.0, 20.0]], [[50.0, 40.0]]]), np.ones((2, 1)),
                                             iou_floor=1e9)
    assert low.shape[0] == 0 and len(rows) == 0 and iou.shape == (2, 3)
