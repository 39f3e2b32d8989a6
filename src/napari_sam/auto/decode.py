"""Decoding the point grid of one crop: the slow step of "segment everything", done once per crop.

For every batch of grid points, as Segment Anything's generator does:

1. decode the batch from the crop's embedding (three candidates per point);
2. drop candidates whose predicted IoU is at or below ``iou_floor``;
3. upsample the survivors' logits to the crop's size, a few masks at a time
   (never all the grid's masks at full resolution: 3 x 1024 masks of
   1024 x 1024 pixels would be 12 GB of float32);
4. compute each one's stability score, drop those below ``stability_floor``;
5. threshold into a mask, take its box, drop masks cut off by the crop's
   edge (unless that edge is the image's);
6. keep the mask as run lengths in the whole image's frame.

What is kept (:class:`CropCandidates`) holds every number the filters need,
so new thresholds select among the candidates without decoding again. The
floors are 0 when a caller wants to filter freely later.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..model.postprocess import upscale_logits
from . import cell_counts, rle, windows

#: Float32 bytes of full-resolution logits upsampled at once (bounds the memory of step 3).
CHUNK_BYTES = 16 * 2**20  # 4 masks of 1024 x 1024: faster than 16 at once (caches), 2-core CPU
#: A mask is finished on the window around it when that is at most this share of the plane: one
#: window at a time costs more per pixel than whole planes in batches (random-weight masks spanning the
#: plane: 1.2x slower on windows), and compact objects gain most with about half (bench_auto_windows.py).
WINDOW_SHARE = 0.5
#: Masks whose cells straddle a stability threshold on at most this share have their stability counted
#: from the low-res logits (cell_counts.py), and only those passing the floor are upsampled. None: off.
#: Off by default, as measured: the counts alone are 3.8x cheaper than on whole planes (smooth masks, 11 %
#: of cells straddling, 1 thread), but the survivors are still upsampled for their box and run lengths, so
#: on the demo model's masks at a 0.95 floor the whole step took 0.8x the time (bench_auto_windows.py);
#: it pays once the box and run lengths come from the cells too.
CELL_SHARE: float | None = None
#: Logits above this are the object (SAM's mask_threshold); the generator's ``mask_threshold`` setting.
MASK_THRESHOLD = 0.0
#: Boxes within this many pixels of a crop's edge are cut off by it (Segment Anything's value).
EDGE_TOLERANCE = 20.0


class SegmentationCancelled(Exception):
    """The user cancelled; what was finished before is kept by the caller."""


@dataclass
class CropCandidates:
    """The decoded candidates of one crop, in grid order (point by point, three candidates each)."""

    crop_box: list[int]  # [x0, y0, x1, y1] in the image
    layer: int
    image_hw: tuple[int, int]
    iou_floor: float
    stability_floor: float
    iou: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    stability: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # Segment Anything's boxes: [x_min, y_min, x_max, y_max] of the mask's pixels (inclusive), in the image.
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int64))
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float64))  # (x, y) in the image
    rles: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.iou)

    def add(self, iou, stability, boxes, points, rles) -> None:
        self.iou = np.concatenate([self.iou, iou])
        self.stability = np.concatenate([self.stability, stability])
        self.boxes = np.concatenate([self.boxes, boxes])
        self.points = np.concatenate([self.points, points])
        self.rles.extend(rles)

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self.rles) + self.iou.nbytes * 2 + self.boxes.nbytes + self.points.nbytes


def decode_crop(predictor, grid: np.ndarray, crop_box, layer: int, image_hw, *, points_per_batch: int,
                stability_offset: float, iou_floor: float = 0.0, stability_floor: float = 0.0,
                on_batch=None, mask_threshold: float = MASK_THRESHOLD) -> CropCandidates:
    """Decode ``grid`` (fractions of the crop) on the predictor's current embedding, which is the crop's.

    ``on_batch()`` is called after each batch (progress, cancel); it may raise
    :class:`SegmentationCancelled`.
    """
    emb = predictor.embedding
    x0, y0, x1, y1 = crop_box
    crop_hw = (y1 - y0, x1 - x0)
    if tuple(emb.original_size) != crop_hw:
        raise ValueError(f"the embedding is of a {emb.original_size} plane, but the crop is {crop_hw}")
    out = CropCandidates(list(crop_box), layer, tuple(image_hw), iou_floor, stability_floor)
    points_in_crop = grid * np.array(crop_hw[::-1])[None, :]
    for start in range(0, len(points_in_crop), points_per_batch):
        points = points_in_crop[start : start + points_per_batch]
        # 1. three candidates per point
        labels = np.ones((len(points), 1))
        if iou_floor > 0.0:
            # masks only for the points with a candidate over the floor (the others' would be dropped)
            low_res, iou, rows = predictor.predict_batch(points[:, None, :], labels, multimask_output=True,
                                                         iou_floor=iou_floor)
            iou, points = iou[rows], points[rows.numpy()]
        else:
            low_res, iou = predictor.predict_batch(points[:, None, :], labels, multimask_output=True)
        point_of = np.repeat(points, iou.shape[1], axis=0)
        low_res, iou = low_res.flatten(0, 1), iou.flatten(0, 1)
        # 2. the predicted-IoU floor, before any upsampling
        if iou_floor > 0.0:
            keep = (iou > iou_floor).numpy()
            low_res, iou, point_of = low_res[keep], iou[keep], point_of[keep]
        # 3.-6. each mask on the window around it where that is exact and pays, else a few at a time
        _finish(out, predictor, emb, low_res, iou, point_of, crop_box, stability_offset, stability_floor,
                mask_threshold)
        if on_batch is not None:
            on_batch()
    return out


def _finish(out, predictor, emb, low_res, iou, points, crop_box, offset, stability_floor,
            threshold: float = MASK_THRESHOLD) -> None:
    side = predictor.model.image_size
    plane = int(np.prod(emb.original_size))
    small = np.zeros(len(iou), bool)
    wins = [None] * len(iou)
    if windows.applies(low_res, side, emb.input_size, emb.original_size):
        wins = windows.windows_of(low_res, side, emb.input_size, min(threshold - offset, threshold))
        # dtype given: a batch with nothing over the floor has no windows, and np.array([]) is float
        small = np.array([windows.window_pixels(w, side, low_res.shape[-1]) <= plane * WINDOW_SHARE for w in wins],
                         dtype=bool)
    stability = np.full(len(iou), np.nan, np.float32)
    boxes = np.zeros((len(iou), 4), np.int64)
    rles: list = [None] * len(iou)
    x0, y0 = crop_box[0], crop_box[1]
    for i in np.flatnonzero(small):
        stability[i], window, boxes[i] = windows.finish_one(low_res[i], wins[i], side, emb.input_size,
                                                            threshold, offset)
        if not stability_floor > 0.0 or stability[i] >= stability_floor:
            rles[i] = windows.encode_window(window, out.image_hw, (y0, x0))
    large = np.flatnonzero(~small)
    counted = np.zeros(0, np.int64)
    stability_thresholds = (threshold + offset, threshold - offset)
    if CELL_SHARE is not None and len(large) and cell_counts.applies(low_res, side, emb.input_size,
                                                                      emb.original_size):
        # Stability from the low-res logits and the boundary's pixels (cell_counts) where the boundary
        # is short; only the masks that pass the floor are upsampled, for their box and run lengths.
        share = cell_counts.straddling_share(low_res[large], stability_thresholds).numpy()
        counted, large = large[share <= CELL_SHARE], large[share > CELL_SHARE]
        if len(counted):
            inner, outer = cell_counts.counts_above(low_res[counted], side, stability_thresholds).unbind(1)
            stability[counted] = (inner.to(torch.int32) / outer.to(torch.int32)).numpy()
            if stability_floor > 0.0:
                counted = counted[stability[counted] >= stability_floor]
    per_chunk = max(1, CHUNK_BYTES // (4 * max(plane, int(np.prod(emb.input_size)))))
    for c in range(0, len(counted), per_chunk):
        _finish_whole_planes(out, predictor, emb, low_res, counted[c : c + per_chunk], crop_box, offset,
                             stability_floor, stability, boxes, rles, threshold, counted=True)
    for c in range(0, len(large), per_chunk):
        _finish_whole_planes(out, predictor, emb, low_res, large[c : c + per_chunk], crop_box, offset,
                             stability_floor, stability, boxes, rles, threshold)
    # the stability floor, and the crop-edge rule
    keep = np.array([r is not None for r in rles], bool)
    boxes += np.array([[x0, y0, x0, y0]])
    keep &= ~near_crop_edge(torch.from_numpy(boxes), crop_box, out.image_hw).numpy()
    out.add(iou.numpy().astype(np.float32)[keep], stability[keep], boxes[keep], points[keep] + np.array([[x0, y0]]),
            [r for r, k in zip(rles, keep) if k])


@torch.inference_mode()
def _finish_whole_planes(out, predictor, emb, low_res, which, crop_box, offset, stability_floor,
                         stability, boxes, rles, threshold: float, counted: bool = False) -> None:
    """Masks ``which`` on whole planes: fill in their stability, box (in the crop) and run lengths (None: dropped).

    ``counted``: their stability is filled in already and they passed its floor.
    """
    logits = upscale_logits(low_res[which][:, None], predictor.model.image_size, emb.input_size,
                            emb.original_size)[:, 0]
    if counted:
        _masks_boxes_rles(out, logits > threshold, which, crop_box, boxes, rles)
        return
    # 4. stability: IoU of the masks thresholded at +offset and -offset (one contains the other)
    inner = (logits > threshold + offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    outer = (logits > threshold - offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    stability[which] = (inner / outer).numpy()
    if stability_floor > 0.0:
        passed = stability[which] >= stability_floor
        logits, which = logits[torch.from_numpy(passed)], which[passed]
    masks = logits > threshold
    del logits
    _masks_boxes_rles(out, masks, which, crop_box, boxes, rles)


def _masks_boxes_rles(out, masks, which, crop_box, boxes, rles) -> None:
    # 5. boxes
    boxes[which] = inclusive_boxes(masks).numpy()
    # 6. run lengths in the image's frame
    H, W = out.image_hw
    if list(crop_box) != [0, 0, W, H]:
        x0, y0 = crop_box[0], crop_box[1]
        masks = F.pad(masks, (x0, W - crop_box[2], y0, H - crop_box[3]), value=False)
    for i, counts in zip(which, rle.encode(masks)):
        rles[i] = counts


def inclusive_boxes(masks: torch.Tensor) -> torch.Tensor:
    """[x_min, y_min, x_max, y_max] pixel indices of each bool (N, H, W) mask; [0, 0, 0, 0] when empty."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.int64)
    rows = masks.any(-1).to(torch.uint8)  # (N, H)
    cols = masks.any(-2).to(torch.uint8)  # (N, W)
    y_min = rows.argmax(-1)
    y_max = h - 1 - rows.flip(-1).argmax(-1)
    x_min = cols.argmax(-1)
    x_max = w - 1 - cols.flip(-1).argmax(-1)
    boxes = torch.stack([x_min, y_min, x_max, y_max], dim=-1)
    return boxes * rows.any(-1, keepdim=True)


def near_crop_edge(boxes: torch.Tensor, crop_box, image_hw) -> torch.Tensor:
    """True for boxes (in the image) within :data:`EDGE_TOLERANCE` of a crop edge that is not an image edge."""
    H, W = image_hw
    crop = torch.as_tensor(crop_box, dtype=torch.float32)[None]
    whole = torch.tensor([[0, 0, W, H]], dtype=torch.float32)
    b = boxes.float()
    at_crop = (b - crop).abs() <= EDGE_TOLERANCE
    at_image = (b - whole).abs() <= EDGE_TOLERANCE
    return (at_crop & ~at_image).any(-1)


def mask_box_inclusive(mask: np.ndarray) -> np.ndarray:
    """:func:`inclusive_boxes` of one numpy mask (after post-processing)."""
    return inclusive_boxes(torch.from_numpy(np.ascontiguousarray(mask))[None]).numpy()[0]
