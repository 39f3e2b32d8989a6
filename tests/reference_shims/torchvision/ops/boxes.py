"""Box area and class-aware NMS (only used by the references' automatic mask generator)."""

import torch


def box_area(boxes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou(box, boxes):
    x1 = torch.maximum(box[0], boxes[:, 0])
    y1 = torch.maximum(box[1], boxes[:, 1])
    x2 = torch.minimum(box[2], boxes[:, 2])
    y2 = torch.minimum(box[3], boxes[:, 3])
    inter = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    return inter / (box_area(box[None])[0] + box_area(boxes) - inter)


def batched_nms(boxes, scores, idxs, iou_threshold):
    order = torch.argsort(scores, descending=True)
    keep = []
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        same = idxs == idxs[i]
        suppressed |= same & (_iou(boxes[i], boxes) > iou_threshold)
    return torch.tensor(keep, dtype=torch.long)
