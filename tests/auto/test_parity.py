"""Our automatic mask generator against Segment Anything's, on the shipped demo model's weights, fp32.

Same weights in both (the reference's modules built at the demo size), same
uint8 image, same settings: the same masks with the same scores, boxes and
points; in the same order without crops (with crops and small-region removal
the reference's NMS breaks ties among equal scores in an unstable order, so
there the records are compared as a set).
"""

import numpy as np
import pytest
import torch

from napari_sam.auto import AutomaticMaskGenerator
from napari_sam.model import SamPredictor, load_model
from napari_sam.model.image import to_uint8_rgb
from napari_sam.synthetic import make_nuclei_2d
from reference_amg import reference_sam, same_weights


@pytest.fixture(scope="module")
def pair():
    ours = load_model("demo")
    ref, sa = reference_sam(ours.config)
    return ours, same_weights(ours, ref), sa


def _image(seed, shape=(300, 256)):
    return to_uint8_rgb(make_nuclei_2d(shape, seed=seed)[0]).rgb


def _run(pair, image, **settings):
    ours, ref, sa = pair
    with torch.no_grad():
        expected = sa.SamAutomaticMaskGenerator(ref, **settings).generate(image)
    got = AutomaticMaskGenerator(SamPredictor(ours, precision="fp32"), **settings).generate(image)
    return expected, got


def _same_record(r, o):
    assert np.array_equal(r["segmentation"], o["segmentation"])
    assert r["bbox"] == o["bbox"] and r["crop_box"] == o["crop_box"] and r["area"] == o["area"]
    assert r["point_coords"][0] == pytest.approx(o["point_coords"][0])
    assert abs(r["predicted_iou"] - o["predicted_iou"]) <= 1e-3
    assert abs(r["stability_score"] - o["stability_score"]) <= 1e-3


# 300 x 256 is resized to the model's input; at 256 x 256 and 200 x 256 (the input size on the longest
# side) each mask is finished only on the window around it (napari_sam.auto.windows).
@pytest.mark.parametrize("shape", [(300, 256), (256, 256), (200, 256)])
def test_same_masks_in_the_same_order(pair, shape):
    expected, got = _run(pair, _image(1, shape), points_per_side=12, pred_iou_thresh=0.6,
                         stability_score_thresh=0.8)
    assert len(expected) >= 10  # the comparison must be able to fail
    assert len(got) == len(expected)
    for r, o in zip(expected, got):
        _same_record(r, o)


def _key(d):
    return (tuple(d["point_coords"][0]), tuple(d["crop_box"]), round(d["predicted_iou"], 3))


def test_same_masks_with_crop_layers_and_small_regions(pair):
    expected, got = _run(pair, _image(2), points_per_side=8, pred_iou_thresh=0.6, stability_score_thresh=0.8,
                         crop_n_layers=1, min_mask_region_area=30)
    assert len(expected) >= 10 and len({tuple(d["crop_box"]) for d in expected}) > 1
    by_key = {_key(o): o for o in got}
    assert len(got) == len(expected) and set(by_key) == {_key(r) for r in expected}
    for r in expected:
        _same_record(r, by_key[_key(r)])


def test_uncompressed_rle_is_the_references(pair):
    expected, got = _run(pair, _image(3, (200, 240)), points_per_side=8, pred_iou_thresh=0.6,
                         stability_score_thresh=0.8, output_mode="uncompressed_rle")
    assert expected and [r["segmentation"] for r in expected] == [o["segmentation"] for o in got]
