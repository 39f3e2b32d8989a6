"""Decoding once, then filtering with new thresholds, gives what a fresh generate with them gives."""

import numpy as np
import pytest

from napari_sam.auto import AutomaticMaskGenerator, SegmentationCancelled
from napari_sam.model import SamPredictor, load_model
from napari_sam.synthetic import make_nuclei_2d


@pytest.fixture(scope="module")
def generator():
    return AutomaticMaskGenerator(SamPredictor(load_model("demo"), precision="fp32"), points_per_side=10,
                                  pred_iou_thresh=0.5, stability_score_thresh=0.7)


@pytest.fixture(scope="module")
def image():
    return make_nuclei_2d((160, 200), seed=5)[0]


@pytest.fixture(scope="module")
def decoded(generator, image):
    return generator.decode_grid(image)


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x["segmentation"], y["segmentation"])
        assert x["predicted_iou"] == y["predicted_iou"] and x["bbox"] == y["bbox"]


@pytest.mark.parametrize("changes", [
    {}, {"pred_iou_thresh": 0.8}, {"stability_score_thresh": 0.9, "box_nms_thresh": 0.3},
    {"min_mask_region_area": 25}, {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
])
def test_filter_equals_a_fresh_generate(generator, image, decoded, changes):
    fresh = AutomaticMaskGenerator(generator.predictor, **{**generator.settings.__dict__, **changes})
    refiltered = generator.filter(decoded, **changes)
    _same(refiltered, fresh.generate(image))
    assert refiltered  # the comparison must be able to fail


def test_thresholds_select_fewer_masks(generator, decoded):
    assert len(generator.filter(decoded, pred_iou_thresh=0.9)) < len(generator.filter(decoded, pred_iou_thresh=0.5))


def test_decoding_settings_cannot_be_refiltered(generator, decoded):
    with pytest.raises(ValueError, match="points_per_side changed"):
        generator.filter(decoded, points_per_side=12)


def test_a_strict_decode_refuses_lower_thresholds(generator, image):
    strict = generator.decode_grid(image, refilter=False)
    with pytest.raises(ValueError, match="refilter=True"):
        generator.filter(strict, pred_iou_thresh=0.1)


def test_everything_filtered_out_is_an_empty_list(generator, decoded):
    assert generator.filter(decoded, pred_iou_thresh=1.0) == []


def test_bad_images_are_refused(generator):
    with pytest.raises(ValueError, match="constant"):
        generator.generate(np.full((50, 50), 7, np.uint16))
    with pytest.raises(ValueError, match="segment_stack"):
        generator.generate(np.zeros((2, 3, 50, 50)))
    with pytest.raises(ValueError, match="empty"):
        generator.generate(np.zeros((0, 5)))


def test_progress_and_cancel(generator, image):
    seen = []
    with pytest.raises(SegmentationCancelled):
        generator.decode_grid(image, progress=lambda d, t: seen.append((d, t)), should_cancel=lambda: len(seen) > 1)
    assert seen[0] == (0, 2) and seen[-1] == (1, 2)


def test_the_embedding_source_is_used_once(image):
    from napari_sam.embeddings import EmbeddingSource

    source = EmbeddingSource()
    g = AutomaticMaskGenerator(load_model("demo"), source=source, points_per_side=4, crop_n_layers=1)
    g.decode_grid(image)
    g.decode_grid(image)
    assert source.encoder_calls == 5  # the image and its 4 crops, each encoded once for both runs
