import numpy as np
import pytest

from napari_sam.volume import stack_through
from napari_sam.volume.commit import object_paint_indices, to_image_indices


def test_paints_background_and_own_label_only():
    labels = np.zeros((3, 4, 4), np.uint16)
    labels[1, 0, 0] = 7  # another object the user made
    labels[1, 1, 1] = 5  # the object's own earlier voxel
    mask = np.zeros((3, 4, 4), bool)
    mask[1, :2, :2] = True
    idx = object_paint_indices(labels, mask, 5)
    painted = labels.copy()
    painted[idx] = 5
    assert painted[1, 0, 0] == 7 and (painted[1, :2, :2] == [[7, 5], [5, 5]]).all()
    assert (painted[labels != 0] == labels[labels != 0]).all()
    forced = labels.copy()
    forced[object_paint_indices(labels, mask, 5, overwrite=True)] = 5
    assert forced[1, 0, 0] == 5


def test_bad_arguments():
    labels = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(ValueError, match="must match"):
        object_paint_indices(labels, np.zeros((2, 3, 4), bool), 1)
    with pytest.raises(TypeError, match="boolean"):
        object_paint_indices(labels, np.zeros((2, 3, 3), np.uint8), 1)
    with pytest.raises(ValueError, match="positive integer"):
        object_paint_indices(labels, np.zeros((2, 3, 3), bool), 0)
    with pytest.raises(ValueError, match="does not fit"):
        object_paint_indices(labels, np.zeros((2, 3, 3), bool), 300)


def test_coordinates_go_back_into_a_4d_image():
    tzyx = np.zeros((2, 3, 4, 5), np.uint8)
    stack, index = stack_through(tzyx, (1, 0, 0, 0))
    mask = np.zeros(stack.shape, bool)
    mask[2, 1, 3] = True
    idx = to_image_indices(object_paint_indices(stack, mask, 4), index)
    tzyx[idx] = 4
    assert tzyx[1, 2, 1, 3] == 4 and tzyx.sum() == 4
    with pytest.raises(ValueError, match="selects"):
        to_image_indices((np.array([0]),), index)
