import math

import pytest
import torch

from napari_sam.training.losses import FOCAL_ALPHA, dice_loss, focal_loss, mask_iou, sam_loss


@pytest.mark.parametrize("alpha", [0.25, 0.5])
def test_focal_loss_of_one_pixel_matches_the_formula(alpha):
    p = 0.7
    logit = torch.tensor([[[math.log(p / (1 - p))]]])
    # Target 1: alpha * (1 - p)^2 * -log(p)
    assert focal_loss(logit, torch.ones(1, 1, 1), alpha=alpha).item() == pytest.approx(
        alpha * 0.3**2 * -math.log(0.7), rel=1e-5)
    # Target 0: (1 - alpha) * p^2 * -log(1 - p)
    assert focal_loss(logit, torch.zeros(1, 1, 1), alpha=alpha).item() == pytest.approx(
        (1 - alpha) * 0.7**2 * -math.log(0.3), rel=1e-5)


def _best_probability_for_a_coin_flip_pixel(alpha):
    """The p that minimises the expected focal loss of a pixel that is object in half the images."""
    logits = torch.linspace(-6, 6, 2401).reshape(-1, 1, 1)
    expected = 0.5 * focal_loss(logits, torch.ones(1, 1, 1), alpha=alpha) + 0.5 * focal_loss(
        logits, torch.zeros(1, 1, 1), alpha=alpha)
    return torch.sigmoid(logits[expected.argmin()]).item()


def test_an_unsure_boundary_pixel_is_cut_at_even_odds():
    # The trained masks are cut at logit 0 (p = 0.5). A pixel that is object
    # as often as background must land there, or every outline drifts inward.
    assert _best_probability_for_a_coin_flip_pixel(FOCAL_ALPHA) == pytest.approx(0.5, abs=0.01)
    # RetinaNet's weighting would call it background (the bias the default avoids).
    assert _best_probability_for_a_coin_flip_pixel(0.25) < 0.4


def test_confident_right_answers_cost_nothing_wrong_ones_a_lot():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    right = (target * 2 - 1) * 20
    assert focal_loss(right, target).item() < 1e-6
    assert dice_loss(right, target).item() < 1e-3
    assert focal_loss(-right, target).item() > 1.0
    assert dice_loss(-right, target).item() > 0.9


def test_mask_iou():
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1  # 8 pixels
    logits = -torch.ones(1, 4, 4)
    logits[0, :1] = 1  # 4 pixels, all inside
    assert mask_iou(logits, target).item() == pytest.approx(0.5)
    assert mask_iou(-torch.ones(1, 4, 4), torch.zeros(1, 4, 4)).item() == 1.0


def test_only_the_best_candidate_is_trained_and_iou_head_learns_true_iou():
    target = torch.zeros(2, 8, 8)
    target[:, 2:6, 2:6] = 1
    perfect = (target * 2 - 1) * 20
    logits = torch.stack([-perfect, -perfect, perfect, -perfect], dim=1)  # candidate 2 is right
    logits.requires_grad_(True)
    true_iou = mask_iou(logits.detach(), target[:, None])
    out = sam_loss(logits, true_iou.clone(), target)
    assert out["best"].item() < 1e-3
    assert out["best_index"].tolist() == [2, 2]
    assert out["iou_mse"].item() == 0.0
    out["total"].backward()
    # Wrong candidates 1 and 3 get no gradient: only the minimum is back-propagated.
    assert logits.grad[:, 1].abs().sum() == 0 and logits.grad[:, 3].abs().sum() == 0
    assert logits.grad[:, 0].abs().sum() > 0  # the single-mask answer is always trained


def test_iou_error_is_squared_difference():
    target = torch.ones(1, 4, 4)
    logits = torch.full((1, 4, 4, 4), 5.0)  # every output perfect: true IoU 1
    out = sam_loss(logits, torch.full((1, 4), 0.5), target)
    assert out["iou_mse"].item() == pytest.approx(0.25)


def test_wrong_logits_shape_is_refused():
    with pytest.raises(ValueError, match="N, 4"):
        sam_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), torch.zeros(2, 4, 4))
