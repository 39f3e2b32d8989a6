import pytest

from napari_sam.auto import AutoSettings, make_settings
from napari_sam.auto.grid import crop_boxes, point_grid


def test_defaults_are_segment_anythings():
    s = AutoSettings()
    assert (s.points_per_side, s.points_per_batch, s.pred_iou_thresh, s.stability_score_thresh) == (32, 64, 0.88, 0.95)
    assert (s.stability_score_offset, s.box_nms_thresh, s.crop_n_layers, s.crop_nms_thresh) == (1.0, 0.7, 0, 0.7)
    assert s.crop_overlap_ratio == 512 / 1500 and s.crop_n_points_downscale_factor == 1
    assert s.min_mask_region_area == 0 and s.output_mode == "binary_mask"


@pytest.mark.parametrize("changes, message", [
    ({"pred_iou_thresh": 1.5}, r"pred_iou_thresh must lie in \[0, 1\]"),
    ({"stability_score_thresh": -0.1}, "stability_score_thresh must lie"),
    ({"box_nms_thresh": float("nan")}, "box_nms_thresh must be a number"),
    ({"points_per_side": 0}, "points_per_side must be between 1 and"),
    ({"points_per_side": 100000}, "points_per_side must be between 1 and"),
    ({"points_per_side": 2.5}, "points_per_side must be a whole number"),
    ({"output_mode": "coco_rle"}, "output_mode must be one of"),
    ({"stability_score_offset": 0}, "stability_score_offset must lie in"),
    ({"points_per_side": 4, "crop_n_layers": 2, "crop_n_points_downscale_factor": 4}, "crop layer 2 would have no points"),
    ({"pred_iou": 0.5}, "unknown setting"),
])
def test_bad_settings_are_refused_with_the_reason(changes, message):
    with pytest.raises(ValueError, match=message):
        make_settings(**changes)


def test_grid_and_crops_follow_the_reference():
    g = point_grid(2)
    assert g.tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    boxes, layers = crop_boxes((100, 200), 1, 0.5)
    assert boxes[0] == [0, 0, 200, 100] and layers == [0, 1, 1, 1, 1]
    # overlap int(0.5 * 100 * 1) = 50; crop side ceil((50 + 200) / 2) = 125 wide, 75 high; x outer, y inner
    assert boxes[1:] == [[0, 0, 125, 75], [0, 25, 125, 100], [75, 0, 200, 75], [75, 25, 200, 100]]
