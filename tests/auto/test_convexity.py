"""Solidity of candidate masks, and NMS that ranks a notched (merged) mask below a convex one (auto/convexity.py)."""

import numpy as np
import pytest
from test_consensus import HW, disc, grid_of

from napari_sam.auto import AutomaticMaskGenerator
from napari_sam.auto.convexity import solidity, solidities
from napari_sam.auto.settings import AutoSettings
from napari_sam.model import load_model
from napari_sam.model.registry import DEMO_AUTO_SETTINGS


@pytest.mark.parametrize("radius", [2, 5, 11, 20])
def test_digital_discs_and_boxes_are_fully_solid_at_any_size(radius):
    big = np.zeros((64, 64), bool)
    yy, xx = np.mgrid[:64, :64]
    big[(yy - 32) ** 2 + (xx - 32) ** 2 <= radius * radius] = True
    assert solidity(big) == pytest.approx(1.0)
    box = np.zeros((64, 64), bool)
    box[10 : 10 + radius, 5 : 5 + 2 * radius] = True
    assert solidity(box) == 1.0


def test_two_touching_discs_are_not_solid_and_a_ring_still_less():
    pair = disc(24, 16, 8) | disc(24, 31, 8)  # two nuclei meeting in a notch
    assert 0.85 < solidity(pair) < 0.97
    ring = disc(24, 24, 12) & ~disc(24, 24, 8)
    assert solidity(ring) == pytest.approx(ring.sum() / disc(24, 24, 12).sum(), abs=0.01)
    assert solidity(ring) < solidity(pair)


def test_empty_and_line_masks_count_as_solid():
    empty = np.zeros(HW, bool)
    assert solidity(empty) == 1.0
    line = np.zeros(HW, bool)
    line[5, 3:40] = True
    assert solidity(line) == 1.0
    diagonal = np.eye(20, dtype=bool)
    assert solidity(diagonal) == 1.0


def test_solidities_of_candidates_read_their_run_lengths():
    pair = disc(24, 16, 8) | disc(24, 31, 8)
    grid = grid_of([(disc(24, 16, 8), 0.9, 0.9), (pair, 0.9, 0.9)])
    values = solidities(grid.crops[0], np.array([1, 0]))
    assert values[0] == pytest.approx(solidity(pair)) and values[1] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def generator():
    return AutomaticMaskGenerator(load_model("demo"), precision="fp32", pred_iou_thresh=0.6,
                                  stability_score_thresh=0.9, box_nms_thresh=0.4, nms_score="stability_score")


def merged_and_single():
    """A merged pair (more stable) and the larger of its nuclei alone: their boxes overlap above 0.4."""
    big, small = disc(24, 18, 10), disc(24, 33, 6)
    return big, small, [(big | small, 0.9, 0.97), (big, 0.9, 0.95)]


def test_convexity_lets_the_convex_nucleus_win_the_nms(generator):
    big, small, candidates = merged_and_single()
    grid = grid_of(candidates)
    plain = generator.filter(grid)
    assert len(plain) == 1 and np.array_equal(plain[0]["segmentation"], big | small)  # the more stable merge
    convex = generator.filter(grid, nms_convexity=0.75)
    assert len(convex) == 1 and np.array_equal(convex[0]["segmentation"], big)
    assert convex[0]["stability_score"] == pytest.approx(0.95)  # the kept candidate's own scores are reported


def test_convexity_weighs_against_the_score_gap(generator):
    # A small weight does not outweigh a large stability gap: the merge stays.
    big, small, candidates = merged_and_single()
    candidates[1] = (big, 0.9, 0.91)
    gap = 0.97 - 0.91
    notch = 1.0 - solidity(big | small)
    assert notch * 0.1 < gap < notch * 3.0
    assert np.array_equal(generator.filter(grid_of(candidates), nms_convexity=0.1)[0]["segmentation"], big | small)
    assert np.array_equal(generator.filter(grid_of(candidates), nms_convexity=3.0)[0]["segmentation"], big)


def test_convexity_is_a_filter_setting_checked_and_off_by_default():
    assert AutoSettings().nms_convexity == 0.0
    assert "nms_convexity" not in dict(AutoSettings().decoding())  # re-filters without decoding again
    for bad in (-0.1, float("nan"), 1e9, True, "1"):
        with pytest.raises(ValueError, match="nms_convexity"):
            AutoSettings(nms_convexity=bad)
    assert DEMO_AUTO_SETTINGS["nms_convexity"] > 0
