import numpy as np
import pytest

from napari_sam.commit import (
    apply_change,
    check_slice_index,
    next_label_id,
    object_mask,
    plan_objects,
    plan_commit,
    undo_change,
)


def square(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def test_new_object_gets_max_plus_one_and_does_not_overwrite_others():
    labels = np.zeros((10, 10), np.uint32)
    labels[0:3, 0:3] = 7
    change = plan_commit(labels, square((10, 10), 2, 5, 2, 5))
    assert change.object_id == 8
    apply_change(labels, change)
    assert labels[2, 2] == 7  # kept
    assert labels[4, 4] == 8 and labels[2, 3] == 8
    assert (labels == 8).sum() == 9 - 1


def test_overwrite_takes_pixels_of_other_objects():
    labels = np.zeros((10, 10), np.uint32)
    labels[0:3, 0:3] = 7
    change = plan_commit(labels, square((10, 10), 2, 5, 2, 5), overwrite=True)
    apply_change(labels, change)
    assert labels[2, 2] == 8 and (labels == 8).sum() == 9


def test_chosen_id_and_undo_restores_exactly():
    labels = np.random.default_rng(0).integers(0, 3, (4, 6, 6)).astype(np.uint16)
    before = labels.copy()
    change = plan_commit(labels, np.ones((6, 6), bool), slice_index=(2,), object_id=40, overwrite=True)
    assert change.object_id == 40
    apply_change(labels, change)
    assert np.all(labels[2] == 40)
    assert np.array_equal(labels[[0, 1, 3]], before[[0, 1, 3]])  # other slices untouched
    undo_change(labels, change)
    assert np.array_equal(labels, before)


def test_only_changed_pixels_are_listed():
    labels = np.zeros((5, 5), np.uint32)
    labels[1:3, 1:3] = 1
    change = plan_commit(labels, square((5, 5), 1, 3, 1, 4), object_id=1)
    assert change.n_changed == 2  # the two new pixels of column 3
    assert np.all(change.old == 0) and np.all(change.new == 1)


def test_replace_edits_the_object_on_this_slice_only():
    labels = np.zeros((2, 8, 8), np.uint32)
    labels[:, 1:4, 1:4] = 3
    labels[0, 5:7, 5:7] = 9
    change = plan_commit(labels, square((8, 8), 2, 7, 2, 7), (0,), object_id=3, replace=True)
    apply_change(labels, change)
    assert labels[0, 1, 1] == 0  # old part outside the new mask is gone
    assert labels[0, 4, 4] == 3
    assert labels[0, 6, 6] == 9  # other object kept
    assert labels[1, 1, 1] == 3  # other slice untouched


def test_empty_mask_is_refused_but_replace_with_empty_deletes():
    labels = np.zeros((4, 4), np.uint32)
    with pytest.raises(ValueError, match="empty"):
        plan_commit(labels, np.zeros((4, 4), bool))
    labels[0, 0] = 2
    change = plan_commit(labels, np.zeros((4, 4), bool), object_id=2, replace=True)
    apply_change(labels, change)
    assert labels.max() == 0


def test_bad_inputs_are_explained():
    labels = np.zeros((3, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="in front of the plane"):
        plan_commit(labels, np.ones((4, 4)), ())
    with pytest.raises(ValueError, match="outside"):
        plan_commit(labels, np.ones((4, 4)), (3,))
    with pytest.raises(ValueError, match="plane"):
        plan_commit(labels, np.ones((5, 4)), (0,))
    with pytest.raises(TypeError, match="integer dtype"):
        plan_commit(labels.astype(float), np.ones((4, 4)), (0,))
    with pytest.raises(TypeError, match="numpy array"):
        next_label_id([[1, 2]])
    with pytest.raises(ValueError, match="between 1 and 255"):
        plan_commit(labels, np.ones((4, 4)), (0,), object_id=300)
    with pytest.raises(TypeError, match="integer"):
        plan_commit(labels, np.ones((4, 4)), (0,), object_id=1.5)
    with pytest.raises(ValueError, match="object_id"):
        plan_commit(labels, np.ones((4, 4)), (0,), replace=True)
    with pytest.raises(TypeError, match="boolean"):
        plan_commit(labels, np.full((4, 4), "a"), (0,))
    labels[0, 0, 0] = 255
    with pytest.raises(ValueError, match="no free object id"):
        next_label_id(labels)
    with pytest.raises(TypeError, match="slice_index"):
        check_slice_index(labels, "z")


def test_object_mask():
    labels = np.zeros((2, 6, 8), np.uint32)
    labels[1, 2:4, 3:7] = 5
    m = object_mask(labels, (1,), 5)
    assert m.sum() == 8 and not object_mask(labels, (0,), 5).any()
    assert m[2:4, 3:7].all()


def test_many_objects_in_one_change_never_take_each_others_pixels():
    labels = np.zeros((2, 10, 10), np.uint16)
    labels[1, 0:2, 0:2] = 4  # an object the user made
    a = square((10, 10), 0, 5, 0, 5)
    b = square((10, 10), 3, 8, 3, 8)  # overlaps a
    empty = np.zeros((10, 10), bool)
    change = plan_objects(labels, [a, empty, b], (1,))
    assert change.object_ids == (5, 6) and change.object_id == 5
    apply_change(labels, change)
    assert (labels[1, 0:2, 0:2] == 4).all()  # kept
    assert (labels[1] == 5).sum() == 25 - 4 and (labels[1] == 6).sum() == 25 - 4  # b lost the shared pixels
    assert not labels[0].any()
    undo_change(labels, change)
    assert labels[1].max() == 4 and (labels[1] == 4).sum() == 4
    with pytest.raises(ValueError, match="no free object id"):
        plan_objects(np.full((1, 4, 4), 255, np.uint8) * np.eye(4, dtype=np.uint8), [np.ones((4, 4), bool)], (0,))


def test_overwrite_lets_new_objects_take_old_ones_but_not_each_other():
    labels = np.zeros((6, 6), np.uint32)
    labels[:3] = 2
    change = plan_objects(labels, [np.ones((6, 6), bool), np.ones((6, 6), bool)], overwrite=True)
    assert change.object_ids == (3,)  # the second mask had nothing left
    apply_change(labels, change)
    assert (labels == 3).all()
