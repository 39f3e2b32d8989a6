import numpy as np
import pytest

from napari_sam.geometry import mask_box
from napari_sam.training.prompts import BOX_MAX_NOISE, error_point, jittered_box, random_point_inside


def disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_random_points_lie_inside_the_object():
    mask = disk((64, 80), (30, 50), 7)
    rng = np.random.default_rng(0)
    for _ in range(200):
        x, y = random_point_inside(mask, rng)
        assert mask[int(y), int(x)]


def test_points_cover_the_object_not_one_spot():
    mask = disk((64, 64), (32, 32), 10)
    rng = np.random.default_rng(1)
    points = {tuple(random_point_inside(mask, rng)) for _ in range(100)}
    assert len(points) > 50


def test_empty_mask_is_refused():
    with pytest.raises(ValueError, match="empty"):
        random_point_inside(np.zeros((8, 8), bool), np.random.default_rng())
    with pytest.raises(ValueError, match="2D"):
        random_point_inside(np.zeros(8, bool), np.random.default_rng())


def test_error_points_have_the_label_of_their_error():
    target = np.zeros((40, 40), bool)
    target[10:30, 10:20] = True
    predicted = np.zeros((40, 40), bool)
    predicted[10:30, 15:25] = True  # misses columns 10-14, wrongly takes 20-24
    rng = np.random.default_rng(0)
    labels = []
    for _ in range(300):
        (x, y), label = error_point(predicted, target, rng)
        x, y = int(x), int(y)
        assert predicted[y, x] != target[y, x], "the click must be where the answer is wrong"
        if target[y, x]:
            assert label == 1, "a missed object pixel asks for a positive click"
        else:
            assert label == 0, "a wrongly taken pixel asks for a negative click"
        labels.append(label)
    assert 0.3 < np.mean(labels) < 0.7  # equal error areas: both kinds drawn


def test_without_error_the_click_confirms_the_object():
    target = disk((32, 32), (16, 16), 5)
    (x, y), label = error_point(target, target, np.random.default_rng(0))
    assert label == 1 and target[int(y), int(x)]


def test_error_point_shapes_must_match():
    with pytest.raises(ValueError, match="shape"):
        error_point(np.zeros((4, 4)), np.zeros((5, 5)), np.random.default_rng())


def test_box_jitter_is_bounded_by_20_pixels():
    mask = np.zeros((800, 800), bool)
    mask[200:600, 250:650] = True  # 400 px sides: 10 % noise would often exceed 20 px
    true = mask_box(mask)
    rng = np.random.default_rng(0)
    shifts = np.array([jittered_box(mask, rng) - true for _ in range(500)])
    assert np.abs(shifts).max() <= BOX_MAX_NOISE + 1e-4
    assert (np.abs(shifts) > 19).mean() > 0.3  # the cut is reached often for big boxes


def test_box_jitter_scales_with_the_box_side():
    mask = np.zeros((200, 200), bool)
    mask[80:120, 60:140] = True  # 80 wide, 40 high
    true = mask_box(mask)
    rng = np.random.default_rng(2)
    shifts = np.array([jittered_box(mask, rng) - true for _ in range(2000)])
    std = shifts.std(axis=0)
    assert std[0] == pytest.approx(8.0, rel=0.15) and std[2] == pytest.approx(8.0, rel=0.15)
    assert std[1] == pytest.approx(4.0, rel=0.15) and std[3] == pytest.approx(4.0, rel=0.15)


def test_jittered_box_stays_in_the_image_and_ordered():
    mask = np.zeros((30, 30), bool)
    mask[0:3, 27:30] = True  # corner object
    rng = np.random.default_rng(3)
    for _ in range(200):
        x0, y0, x1, y1 = jittered_box(mask, rng, noise=2.0)
        assert 0 <= x0 <= x1 <= 30 and 0 <= y0 <= y1 <= 30  # pixel edges: the plane spans [0, 30]
