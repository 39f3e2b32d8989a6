"""Segment everything: Segment Anything's automatic mask generator, with the slow step kept apart.

Usage, as users of Segment Anything know it::

    generator = AutomaticMaskGenerator(load_model("demo"), points_per_side=24)
    records = generator.generate(image)   # list of dicts: segmentation, area, bbox, ...

and, for a dock whose threshold sliders re-filter at once::

    decoded = generator.decode_grid(image)                # seconds: the model, once per image
    records = generator.filter(decoded, pred_iou_thresh=0.7)   # well under a second

The steps, one crop at a time (crop 0 is the whole image), as Segment Anything
does them: embed the crop (through the embedding cache: nothing is encoded
twice), decode the point grid (:mod:`.decode`), keep the confident and stable
masks, remove duplicates within the crop by box NMS, then duplicates between
crops (the smaller crop wins), then fill small holes and remove small islands
(:mod:`.postprocess`), and NMS once more among the changed masks.

Boxes (``bbox``) are Segment Anything's: XYWH of the mask's pixel indices, so a
mask on columns 3..7 has x = 3, w = 4 (see napari_sam.geometry for the
package's pixel-edge boxes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.embedding import ImageEmbedding
from ..model.image import check_image, to_uint8_rgb
from ..progress import CancelCheck, ProgressCallback
from . import consensus, convexity, rle
from .decode import CropCandidates, SegmentationCancelled, decode_crop, mask_box_inclusive
from .grid import crop_boxes, layer_point_grids
from .nms import box_nms
from .postprocess import remove_small_regions
from .settings import AutoSettings, make_settings


@dataclass
class DecodedGrid:
    """Every crop's decoded candidates for one image: what :meth:`AutomaticMaskGenerator.filter` selects from."""

    image_hw: tuple[int, int]
    decoding: tuple  # AutoSettings.decoding() of the settings it was decoded with
    crops: list[CropCandidates]

    @property
    def n_candidates(self) -> int:
        return sum(len(c) for c in self.crops)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.crops)


class AutomaticMaskGenerator:
    def __init__(self, model_or_predictor, *, source=None, precision: str = "auto", **settings) -> None:
        from ..model.predictor import SamPredictor

        if isinstance(model_or_predictor, SamPredictor):
            # A twin: the caller's predictor (the annotator's) keeps its current image.
            self.predictor = model_or_predictor.twin()
        elif all(hasattr(model_or_predictor, p) for p in ("image_encoder", "prompt_encoder", "mask_decoder")):
            self.predictor = SamPredictor(model_or_predictor, precision=precision)
        else:
            raise TypeError(f"expected a SAM model or a SamPredictor, got {type(model_or_predictor).__name__}")
        self.settings = make_settings(**settings)
        self.source = source  # napari_sam.embeddings.EmbeddingSource, or None: embed here
        self.model_id = self.predictor.model.weights_id
        self.precision = self.predictor.embedding_precision

    # ------------------------------------------------------------ the slow step
    def decode_grid(self, image=None, *, embedding: ImageEmbedding | None = None, intensity_range=None,
                    slice_index=(), refilter: bool = True, progress: ProgressCallback | None = None,
                    should_cancel: CancelCheck | None = None) -> DecodedGrid:
        """Decode every crop's point grid of ``image`` (or of the whole plane's ``embedding``).

        ``refilter=True`` keeps candidates below the thresholds too, so that
        :meth:`filter` may lower them later; ``False`` keeps only what these
        settings let through (less work, as Segment Anything's generator).
        Raises :class:`SegmentationCancelled` when ``should_cancel()`` turns True.
        """
        s = self.settings
        plane = None if image is None else check_plane(image)
        if plane is None and embedding is None:
            raise ValueError("give the image to segment (or the embedding of the whole plane)")
        if plane is None and s.crop_n_layers > 0:
            raise ValueError("crop layers need the image itself, not only its embedding: pass image=")
        hw = tuple(plane.shape[:2]) if plane is not None else tuple(embedding.original_size)
        if embedding is not None and tuple(embedding.original_size) != hw:
            raise ValueError(f"the embedding is of a {embedding.original_size} plane, the image is {hw}")
        boxes, layers = crop_boxes(hw, s.crop_n_layers, s.crop_overlap_ratio)
        grids = layer_point_grids(s.points_per_side, s.crop_n_layers, s.crop_n_points_downscale_factor)
        batches = [-(-len(grids[layer]) // s.points_per_batch) for layer in layers]
        total, done = sum(batches), 0
        rgb = None

        def on_batch():
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)
            if should_cancel is not None and should_cancel():
                raise SegmentationCancelled(f"cancelled after {done} of {total} batches of grid points")

        if progress is not None:
            progress(0, total)
        floors = (0.0, 0.0) if refilter else s.decode_floors()
        crops = []
        for box, layer in zip(boxes, layers):
            if layer == 0:
                emb = embedding if embedding is not None else self._embed(plane, intensity_range, slice_index)
            else:
                # Crops of the whole image's uint8 RGB: every crop is scaled like the image it comes from.
                rgb = to_uint8_rgb(plane, intensity_range).rgb if rgb is None else rgb
                x0, y0, x1, y1 = box
                emb = self._embed(np.ascontiguousarray(rgb[y0:y1, x0:x1]), None, (*tuple(slice_index), *box))
            self.predictor.set_embedding(emb)
            try:
                crops.append(decode_crop(
                    self.predictor, grids[layer], box, layer, hw, points_per_batch=s.points_per_batch,
                    stability_offset=s.stability_score_offset,
                    iou_floor=floors[0], stability_floor=floors[1], on_batch=on_batch,
                    mask_threshold=s.mask_threshold))
            finally:
                self.predictor.reset_image()
        return DecodedGrid(hw, s.decoding(), crops)

    def embed(self, plane, intensity_range=None) -> ImageEmbedding:
        """The image encoder on one plane (the encoder interface of the embedding source)."""
        return self.predictor.set_image(plane, intensity_range=intensity_range)

    def _embed(self, plane, intensity_range, slice_index) -> ImageEmbedding:
        if self.source is None:
            return self.embed(plane, intensity_range)
        from ..embeddings import slice_key

        key = slice_key(plane, slice_index, self, intensity_range)
        return self.source.get(key, plane, self, intensity_range).embedding

    # ------------------------------------------------------------ the fast step
    def filter(self, decoded: DecodedGrid, **changes) -> list[dict]:
        """The mask records these settings (with ``changes``) select from ``decoded``; no model runs."""
        s = self.settings.replace(**changes) if changes else self.settings
        if s.decoding() != decoded.decoding:
            changed = [a for (a, v), (_, w) in zip(s.decoding(), decoded.decoding) if v != w]
            raise ValueError(f"{', '.join(changed)} changed since the grid was decoded: decode the grid again "
                             "(only thresholds, NMS, min_mask_region_area and output_mode re-filter)")
        records = []  # in the order Segment Anything keeps them
        iou_floor, stability_floor = s.decode_floors()
        for crop in decoded.crops:
            if iou_floor < crop.iou_floor or stability_floor < crop.stability_floor:
                raise ValueError(
                    f"this grid was decoded keeping only predicted IoU > {crop.iou_floor} and stability >= "
                    f"{crop.stability_floor}; decode it with refilter=True to lower the thresholds or fill gaps")
            records.extend(_select_in_crop(crop, s))
        if len(decoded.crops) > 1 and records:
            # Duplicates between crops: the mask from the smaller crop wins.
            boxes = np.array([r.box for r in records])
            areas = np.array([(r.crop.crop_box[2] - r.crop.crop_box[0]) * (r.crop.crop_box[3] - r.crop.crop_box[1])
                              for r in records])
            scores = 1.0 / areas.astype(np.float32)
            records = [records[i] for i in box_nms(boxes, scores, s.crop_nms_thresh)]
        if s.min_mask_region_area > 0 and records:
            records = _remove_small_regions(records, decoded.image_hw, s)
        return [r.as_dict(decoded.image_hw, s.output_mode) for r in records]

    def generate(self, image, **kwargs) -> list[dict]:
        """Decode and filter ``image`` with the generator's settings (``kwargs``: :meth:`decode_grid`'s)."""
        return self.filter(self.decode_grid(image, refilter=False, **kwargs))


def _select_in_crop(crop: CropCandidates, s: AutoSettings) -> list["_Record"]:
    """The crop's kept masks: confident and stable, without duplicates, then (if asked) merged and gap-filled."""
    # The confident and stable candidates of this crop ...
    ok = np.ones(len(crop), dtype=bool)
    if s.pred_iou_thresh > 0.0:
        ok &= crop.iou > s.pred_iou_thresh
    if s.stability_score_thresh > 0.0:
        ok &= crop.stability >= s.stability_score_thresh
    passed = np.flatnonzero(ok)
    # ... without duplicates inside the crop (of two, the one with the better score) ...
    score = crop.iou if s.nms_score == "predicted_iou" else crop.stability
    ranked = score[passed]
    if s.nms_convexity:
        # a mask with a notch (two touching nuclei) ranks below a convex one of similar score
        ranked = ranked - s.nms_convexity * (1.0 - convexity.solidities(crop, passed))
    kept = passed[box_nms(crop.boxes[passed], ranked, s.box_nms_thresh)]
    if not s.merge_duplicates_iou and not s.fills_gaps:
        return [_Record(crop, int(i)) for i in kept]
    # ... each the pixel majority of its duplicates, if asked ...
    if s.merge_duplicates_iou:
        masks = consensus.merged_masks(crop, kept, passed, s.merge_duplicates_iou)
        records = [_Record(crop, int(i), mask) for i, mask in zip(kept, masks)]
    else:  # unchanged: their run lengths and boxes stay; the masks only tell what is covered
        masks = [rle.decode(crop.rles[i], crop.image_hw) for i in kept]
        records = [_Record(crop, int(i)) for i in kept]
    # ... and the gaps that nothing kept covers filled by the best of the candidates that fell short.
    if s.fills_gaps:
        covered = np.zeros(crop.image_hw, dtype=bool)
        for mask in masks:
            covered |= mask
        fallen = np.flatnonzero(~ok & (crop.iou > s.gap_fill_iou_thresh))
        records += [_Record(crop, i, mask) for i, mask in
                    consensus.gap_fillers(crop, covered, fallen, score, s.box_nms_thresh)]
    return records


class _Record:
    """One kept mask on its way to the output dict; merging and post-processing may replace its mask and box."""

    def __init__(self, crop: CropCandidates, i: int, mask: np.ndarray | None = None) -> None:
        self.crop, self.i = crop, i
        self.counts, self.box, self.mask = crop.rles[i], crop.boxes[i], None
        if mask is not None:
            self.counts, self.box, self.mask = rle.encode(_as_tensor(mask))[0], mask_box_inclusive(mask), mask

    def as_dict(self, image_hw, output_mode: str) -> dict:
        c, i = self.crop, self.i
        x0, y0, x1, y1 = (int(v) for v in self.box)
        cx0, cy0, cx1, cy1 = c.crop_box
        if output_mode == "binary_mask":
            segmentation = self.mask if self.mask is not None else rle.decode(self.counts, image_hw)
        else:
            segmentation = rle.to_dict(self.counts, image_hw)
        return {
            "segmentation": segmentation,
            "area": rle.area(self.counts),
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "predicted_iou": float(c.iou[i]),
            "point_coords": [[float(v) for v in c.points[i]]],
            "stability_score": float(c.stability[i]),
            "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
        }


def _remove_small_regions(records: list[_Record], image_hw, s: AutoSettings) -> list[_Record]:
    """Fill small holes, remove small islands, then NMS again preferring the masks that did not change."""
    scores, masks = [], []
    for r in records:
        mask = rle.decode(r.counts, image_hw)
        mask, filled = remove_small_regions(mask, s.min_mask_region_area, "holes")
        mask, removed = remove_small_regions(mask, s.min_mask_region_area, "islands")
        masks.append(mask)
        scores.append(0.0 if filled or removed else 1.0)
    boxes = np.array([mask_box_inclusive(m) if sc == 0.0 else r.box for m, sc, r in zip(masks, scores, records)])
    kept = box_nms(boxes, np.array(scores), max(s.box_nms_thresh, s.crop_nms_thresh))
    out = []
    for k in kept:
        r = records[k]
        if scores[k] == 0.0:
            r.counts = rle.encode(_as_tensor(masks[k]))[0]
            r.box = boxes[k]
        r.mask = masks[k]
        out.append(r)
    return out


def _as_tensor(mask: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(mask))[None]


def check_plane(image) -> np.ndarray:
    """A 2D plane or RGB(A) image to segment, or a ValueError saying what is wrong and what to do."""
    arr = np.asarray(image) if not hasattr(image, "ndim") else image
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) or arr.ndim > 3:
        raise ValueError(
            f"the image has shape {tuple(arr.shape)}: segment everything works on one 2D plane (rows, columns) "
            "or an RGB(A) image; for a stack use napari_sam.auto.segment_stack, for more axes take one stack first")
    arr = check_image(np.asarray(arr))
    if arr.size and np.all(arr == arr.flat[0]):
        raise ValueError(f"the image is constant (every pixel is {arr.flat[0]!r}): there is nothing to segment")
    return arr
