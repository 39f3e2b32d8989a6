"""The generator's mask_threshold: where logits become the object, a decoding setting of its own."""

import numpy as np
import pytest

from napari_sam.auto import AutomaticMaskGenerator
from napari_sam.auto.settings import AutoSettings
from napari_sam.model import SamPredictor, load_model
from napari_sam.synthetic import make_nuclei_2d


@pytest.fixture(scope="module")
def image():
    return make_nuclei_2d((128, 128), seed=5001)[0]


def generator(threshold):
    return AutomaticMaskGenerator(SamPredictor(load_model("demo"), precision="fp32"), points_per_side=8,
                                  pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0,
                                  mask_threshold=threshold)


def test_a_lower_threshold_gives_larger_masks_from_the_same_points(image):
    at_zero = generator(0.0).generate(image)
    lower = generator(-2.0).generate(image)
    assert len(at_zero) == len(lower) > 0  # no filter: one record per candidate, in grid order
    grew = 0
    for a, b in zip(at_zero, lower):
        assert a["point_coords"] == b["point_coords"] and a["predicted_iou"] == b["predicted_iou"]
        assert not (a["segmentation"] & ~b["segmentation"]).any()  # every pixel at 0 is kept at -2
        grew += b["area"] > a["area"]
    # Masks whose logits drop steeply at the edge (or that are empty, or the whole plane) keep their
    # pixels; the demo model grows 84 of 192 here, by 45 % of the area in all (97, 52 % before its crowded stage).
    assert grew > len(at_zero) // 3
    assert sum(b["area"] for b in lower) > 1.3 * sum(a["area"] for a in at_zero)


def test_it_needs_the_grid_decoded_again(image):
    gen = generator(0.0)
    decoded = gen.decode_grid(image)
    with pytest.raises(ValueError, match="mask_threshold changed"):
        gen.filter(decoded, mask_threshold=-0.5)


def test_an_absurd_threshold_is_refused():
    with pytest.raises(ValueError, match="mask_threshold"):
        AutoSettings(mask_threshold=1e9)
    with pytest.raises(ValueError, match="mask_threshold"):
        AutoSettings(mask_threshold=float("nan"))
