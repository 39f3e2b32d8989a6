import numpy as np
import pytest

from napari_sam.geometry import (
    box_iou,
    box_to_inclusive,
    box_xywh,
    interior_point,
    mask_area,
    mask_box,
    mask_iou,
    masks_boxes,
)


def test_box_is_in_pixel_edges():
    m = np.zeros((6, 8), bool)
    m[2:4, 3:7] = True  # rows 2..3, columns 3..6
    assert mask_box(m).tolist() == [3, 2, 7, 4]
    assert box_xywh(mask_box(m)).tolist() == [3, 2, 4, 2]  # width and height in pixels
    assert box_to_inclusive(mask_box(m)).tolist() == [3, 2, 6, 3]  # Segment Anything's bbox form
    with pytest.raises(ValueError, match="empty"):
        mask_box(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2D"):
        mask_box(np.zeros((2, 3, 3)))


def test_box_margin_is_clipped_to_the_plane():
    mask = np.zeros((20, 30), bool)
    mask[5:10, 2:28] = True
    mask[5:18, 2:6] = True
    np.testing.assert_array_equal(mask_box(mask), [2, 5, 28, 18])
    np.testing.assert_allclose(mask_box(mask, 0.1), [0, 3.7, 30, 19.3])
    with pytest.raises(ValueError, match="margin"):
        mask_box(mask, -0.1)


def test_boxes_of_a_stack_match_one_by_one():
    rng = np.random.default_rng(0)
    masks = rng.random((6, 17, 23)) > 0.97
    masks[2] = False  # an empty one
    boxes = masks_boxes(masks)
    for m, b in zip(masks, boxes):
        expected = mask_box(m) if m.any() else np.zeros(4)
        np.testing.assert_array_equal(b, expected)
    assert masks_boxes(np.zeros((0, 4, 4), bool)).shape == (0, 4)


def test_interior_point_lies_inside_an_l_shape():
    mask = np.zeros((20, 30), bool)
    mask[5:10, 2:28] = True
    mask[5:18, 2:6] = True  # an L shape: its centroid would lie outside
    x, y = interior_point(mask)
    assert mask[int(y), int(x)]
    with pytest.raises(ValueError, match="empty"):
        interior_point(np.zeros((4, 4)))


def test_iou_and_area():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True
    b[1:3] = True
    assert mask_area(a) == 8
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    with pytest.raises(ValueError, match="shapes"):
        mask_iou(a, np.zeros((3, 3)))
    m = box_iou([[0, 0, 2, 2], [5, 5, 6, 6]], [[1, 1, 3, 3]])
    np.testing.assert_allclose(m[:, 0], [1 / 7, 0])
