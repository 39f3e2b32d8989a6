"""The automatic mask generator's settings: Segment Anything's names and defaults, checked.

Split in two, because they cost differently when changed:

* decoding settings (the point grid, the crops, the stability offset) decide
  what the model is asked; changing them means decoding the grid again;
* filtering settings (the thresholds, NMS, small regions, output form) only
  select among the decoded candidates; :meth:`AutomaticMaskGenerator.filter`
  applies new ones to a kept :class:`~napari_sam.auto.DecodedGrid` in well
  under a second.
"""

from __future__ import annotations

import dataclasses
import math

OUTPUT_MODES = ("binary_mask", "uncompressed_rle")
#: More points per side than this would decode over a million prompts per crop: surely a typo.
MAX_POINTS_PER_SIDE = 1024
#: Logits of the mask decoder seldom leave +-20; a mask threshold beyond this is surely a typo.
MAX_LOGIT = 100.0
#: Scores (predicted IoU, stability) lie in [0, 1]: a convexity weight beyond this is surely a typo.
MAX_CONVEXITY = 100.0
#: Settings that only select among decoded candidates.
FILTER_SETTINGS = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh",
                   "min_mask_region_area", "output_mode", "nms_score", "merge_duplicates_iou", "gap_fill_iou_thresh",
                   "nms_convexity")
#: What box NMS keeps the best of: Segment Anything's predicted IoU, or the stability score.
NMS_SCORES = ("predicted_iou", "stability_score")


@dataclasses.dataclass(frozen=True)
class AutoSettings:
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    output_mode: str = "binary_mask"
    # Not Segment Anything's: this package's own steps (napari_sam.auto.consensus), off at these defaults.
    nms_score: str = "predicted_iou"
    merge_duplicates_iou: float = 0.0  # > 0: each kept mask is the pixel majority of its duplicates
    gap_fill_iou_thresh: float = 0.0  # > 0: candidates above this predicted IoU fill what nothing covers
    mask_threshold: float = 0.0  # logits above it are the object (SAM's predictor has 0); needs decoding again
    nms_convexity: float = 0.0  # > 0: NMS score less this times (1 - solidity): convex masks win (auto/convexity.py)

    @property
    def fills_gaps(self) -> bool:
        return self.gap_fill_iou_thresh > 0.0

    def decode_floors(self) -> tuple[float, float]:
        """(predicted IoU, stability) below which no candidate can ever be kept with these settings."""
        if self.fills_gaps:
            return min(self.pred_iou_thresh, self.gap_fill_iou_thresh), 0.0
        return self.pred_iou_thresh, self.stability_score_thresh

    def __post_init__(self) -> None:
        _whole("points_per_side", self.points_per_side, 1, MAX_POINTS_PER_SIDE)
        _whole("points_per_batch", self.points_per_batch, 1, 65536)
        _whole("crop_n_layers", self.crop_n_layers, 0, 4)
        _whole("crop_n_points_downscale_factor", self.crop_n_points_downscale_factor, 1, 64)
        _whole("min_mask_region_area", self.min_mask_region_area, 0, 10**12)
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh",
                     "merge_duplicates_iou", "gap_fill_iou_thresh"):
            _fraction(name, getattr(self, name))
        _number("crop_overlap_ratio", self.crop_overlap_ratio, 0.0, 1.0, high_open=True)
        _number("stability_score_offset", self.stability_score_offset, 0.0, 1e6, low_open=True)
        _number("mask_threshold", self.mask_threshold, -MAX_LOGIT, MAX_LOGIT)
        _number("nms_convexity", self.nms_convexity, 0.0, MAX_CONVEXITY)
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"output_mode must be one of {', '.join(OUTPUT_MODES)}, got {self.output_mode!r} "
                             "(coco_rle needs pycocotools: encode the uncompressed RLE with it)")
        if self.nms_score not in NMS_SCORES:
            raise ValueError(f"nms_score must be one of {', '.join(NMS_SCORES)}, got {self.nms_score!r}")
        for layer in range(self.crop_n_layers + 1):
            if self.points_per_side // self.crop_n_points_downscale_factor**layer < 1:
                raise ValueError(
                    f"crop layer {layer} would have no points: points_per_side {self.points_per_side} divided by "
                    f"crop_n_points_downscale_factor**{layer} = {self.crop_n_points_downscale_factor ** layer} is "
                    "below 1; use fewer crop layers or a smaller downscale factor")

    def replace(self, **changes) -> "AutoSettings":
        """These settings with ``changes`` (checked); unknown names raise a ValueError listing the known ones."""
        return make_settings(self, **changes)

    def decoding(self) -> tuple:
        """The settings a kept decoded grid depends on (all but :data:`FILTER_SETTINGS`)."""
        return tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in FILTER_SETTINGS)


def make_settings(base: AutoSettings | None = None, **changes) -> AutoSettings:
    base = base if base is not None else AutoSettings()
    known = {f.name for f in dataclasses.fields(AutoSettings)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; the automatic mask generator knows "
                         f"{', '.join(sorted(known))}")
    return dataclasses.replace(base, **changes)


def _whole(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")


def _fraction(name: str, value) -> None:
    _number(name, value, 0.0, 1.0)


def _number(name: str, value, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {left}{low:g}, {high:g}{right}, got {value}")
