"""A candidate that is a box crop (a plane handled by tiles) written into the labels."""

import numpy as np
import pytest

from napari_sam.commit import apply_change, plan_commit, undo_change
from napari_sam.session.cropped_commit import plan_cropped_commit


def labels_and_crop():
    labels = np.zeros((2, 50, 60), np.uint16)
    labels[1, 10:14, 20:24] = 5
    labels[1, 30:33, 40:42] = 5  # the same object outside the crop's box: an edit clears it
    labels[0, 0:3, 0:3] = 2
    crop = np.zeros((8, 9), bool)
    crop[1:7, 2:8] = True
    return labels, crop


@pytest.mark.parametrize("overwrite, replace, object_id", [(False, False, None), (True, False, None),
                                                           (False, True, 5), (True, True, 5)])
def test_a_crop_changes_exactly_what_the_full_plane_mask_would(overwrite, replace, object_id):
    labels, crop = labels_and_crop()
    full = np.zeros((50, 60), bool)
    full[8:16, 18:27] = crop
    a = plan_cropped_commit(labels, crop, (8, 18), (1,), object_id, overwrite=overwrite, replace=replace)
    b = plan_commit(labels, full, (1,), object_id, overwrite=overwrite, replace=replace)
    after_a, after_b = labels.copy(), labels.copy()
    apply_change(after_a, a)
    apply_change(after_b, b)
    assert a.object_id == b.object_id and np.array_equal(after_a, after_b) and a.n_changed == b.n_changed
    undo_change(after_a, a)
    assert np.array_equal(after_a, labels)


def test_bad_crops_say_what_is_wrong():
    labels, crop = labels_and_crop()
    with pytest.raises(ValueError, match="outside the labels plane"):
        plan_cropped_commit(labels, crop, (45, 0), (1,))
    with pytest.raises(ValueError, match="empty"):
        plan_cropped_commit(labels, np.zeros((3, 3), bool), (0, 0), (1,))
    with pytest.raises(ValueError, match="object_id"):
        plan_cropped_commit(labels, crop, (0, 0), (1,), replace=True)
