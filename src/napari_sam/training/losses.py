"""Losses of SAM's training: focal + dice on masks, squared error on the predicted IoU.

Each mask loss is a mean over its pixels, one value per mask, so that the
best of several candidate masks can be picked per object.
"""

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0  # SAM paper: focal and dice in a 20:1 ratio
DICE_WEIGHT = 1.0
# Object and background pixels weigh the same. RetinaNet's 0.25 (a weight of
# 0.25 on object pixels, 0.75 on background) makes an unsure model call a
# boundary pixel object only when it is 75 % sure, so outlines shrink: the demo
# model trained with it cut small nuclei to 85 % of their area (median, nuclei
# under 300 px), and its held-out IoU rose when the mask threshold was lowered.
# With 0.5 the cut falls where object and background are equally likely.
FOCAL_ALPHA = 0.5
FOCAL_GAMMA = 2.0


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = FOCAL_ALPHA, gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Sigmoid focal loss averaged over the last two (pixel) dimensions."""
    targets = targets.to(logits.dtype).expand_as(logits)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_true = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_true) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean(dim=(-2, -1))


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - soft Dice between sigmoid(logits) and the target, per mask."""
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    inter = (p * targets).sum(dim=(-2, -1))
    total = p.sum(dim=(-2, -1)) + targets.sum(dim=(-2, -1))
    return 1 - (2 * inter + smooth) / (total + smooth)


def mask_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return FOCAL_WEIGHT * focal_loss(logits, targets) + DICE_WEIGHT * dice_loss(logits, targets)


@torch.no_grad()
def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of (logits > 0) with the target, per mask; 1 when both are empty."""
    pred = logits > 0
    true = targets > 0.5
    inter = (pred & true).sum(dim=(-2, -1)).float()
    union = (pred | true).sum(dim=(-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss for the decoder's four outputs per object.

    ``logits`` (N, 4, h, w): output 0 is the single-mask answer, 1-3 the
    candidates for an ambiguous prompt; ``iou_pred`` (N, 4); ``targets``
    (N, h, w). Output 0 is always trained; of the three candidates only the
    best one per object (the lowest loss) is, so each may specialise (part,
    object, whole). The IoU head learns the true IoU of every output.
    """
    if logits.ndim != 4 or logits.shape[1] != 4:
        raise ValueError(f"logits must be (N, 4, h, w), got {tuple(logits.shape)}")
    per_mask = mask_loss(logits, targets[:, None])  # (N, 4)
    single = per_mask[:, 0]
    best, best_index = per_mask[:, 1:].min(dim=1)
    true_iou = mask_iou(logits, targets[:, None])
    iou_mse = F.mse_loss(iou_pred.float(), true_iou)
    total = single.mean() + best.mean() + iou_mse
    return {"total": total, "single": single.mean(), "best": best.mean(), "iou_mse": iou_mse,
            "true_iou": true_iou, "best_index": best_index + 1}
