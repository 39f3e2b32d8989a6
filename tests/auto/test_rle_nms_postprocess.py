import numpy as np
import pytest
import torch

from napari_sam.auto import rle
from napari_sam.auto.nms import box_nms
from napari_sam.auto.postprocess import _whole_plane, remove_small_regions


def test_rle_round_trip_and_layout():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 7, 5)) > 0.5
    masks[0] = False
    masks[1] = True
    masks[2, 0, 0] = True
    for m, counts in zip(masks, rle.encode(torch.from_numpy(masks))):
        assert np.array_equal(rle.decode(counts, m.shape), m)
        assert rle.area(counts) == m.sum()
        assert np.array_equal(rle.from_dict(rle.to_dict(counts, m.shape)), m)
    # column by column, starting with background
    one = np.array([[1, 0], [1, 1]], bool)
    assert rle.encode(torch.from_numpy(one[None]))[0].tolist() == [0, 2, 1, 1]
    with pytest.raises(ValueError, match="cover"):
        rle.decode(np.array([1, 2]), (2, 2))
    with pytest.raises(ValueError, match="compressed"):
        rle.from_dict({"size": [2, 2], "counts": "abc"})


def test_nms_keeps_the_better_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = np.array([0.5, 0.9, 0.7, 0.9])
    # 1 and 3 tie at 0.9: the first given wins; IoU(1, 3) = 72/90 = 0.8, IoU(0, 1) = 0.81, IoU(0, 3) = 0.9
    assert box_nms(boxes, scores, 0.7).tolist() == [1, 2]
    assert box_nms(boxes, scores, 0.85).tolist() == [1, 3, 2]
    assert box_nms(boxes, scores, 0.95).tolist() == [1, 3, 2, 0]


@pytest.mark.parametrize("seed", range(6))
def test_small_regions_in_a_window_equal_the_whole_plane(seed):
    rng = np.random.default_rng(seed)
    mask = np.zeros((60, 70), bool)
    mask[10:40, 15:50] = True
    mask[rng.integers(10, 40, 20), rng.integers(15, 50, 20)] = False  # holes
    mask[rng.integers(0, 60, 8), rng.integers(0, 70, 8)] = True  # islands
    if seed % 2:
        mask[:, :3] = True  # touching the plane's edge
    for mode in ("holes", "islands"):
        for area in (1, 3, 30, 5000):
            got, changed = remove_small_regions(mask, area, mode)
            want, want_changed = _whole_plane(mask, area, mode)
            assert np.array_equal(got, want) and changed == want_changed
    assert remove_small_regions(mask, 3, "holes")[1]  # the test can fail: something changes


def test_small_region_mode_is_checked():
    with pytest.raises(ValueError, match="mode"):
        remove_small_regions(np.ones((3, 3), bool), 2, "gaps")
