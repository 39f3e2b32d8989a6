"""Oracle tests for issue 18: touching objects, poles, several objects at once, correcting mid-stack."""

import numpy as np
import pytest

from napari_sam.commit import apply_change, undo_change
from napari_sam.volume.propagate import (
    correct,
    plan_objects_change,
    propagate,
    propagate_all,
    propagate_objects,
)
from napari_sam.volume.propagation.signal import calibrate, fit_to_signal
from napari_sam.volume.propagate import SliceSegmentation
from volume_helpers import OracleSegmenter

Z, H, W = 24, 48, 64
zz, yy, xx = np.mgrid[0:Z, 0:H, 0:W]


def ellipsoid(cz, cy, cx, rz, ry, rx):
    return ((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


class BleedingOracle(OracleSegmenter):
    """A model that bleeds into touching objects: it answers with every object reaching into the box,
    except the objects under a negative point (a stand-in for SAM on touching nuclei)."""

    def segment(self, index, prompt):
        self.calls.append(index)
        plane = self.labels[index]
        x0, y0, x1, y1 = prompt.box
        window = plane[int(np.floor(y0)): int(np.ceil(y1)), int(np.floor(x0)): int(np.ceil(x1))]
        wanted = set(np.unique(window[window > 0]).tolist())
        for (x, y), positive in zip(prompt.points, prompt.point_labels):
            if not positive:
                wanted.discard(int(plane[int(y), int(x)]))
        return SliceSegmentation(np.isin(plane, list(wanted)) & (plane > 0), None, 1.0)


def touching_pair():
    left = ellipsoid(12, 24, 22, 8.5, 12, 10)
    right = ellipsoid(12, 24, 42, 8.5, 12, 10) & ~left
    labels = np.zeros((Z, H, W), np.uint16)
    labels[left], labels[right] = 1, 2
    return labels


def test_touching_objects_each_come_out_whole_and_only_themselves():
    labels = touching_pair()
    oracle = BleedingOracle(labels)
    alone = propagate(oracle, {12: labels[12] == 1}, Z)
    assert (alone.mask & (labels == 2)).any()  # the model alone bleeds into the neighbour...

    seeds = {1: {12: labels[12] == 1}, 2: {12: labels[12] == 2}}
    together = propagate_objects(oracle, seeds, Z)
    assert np.array_equal(together.labels, labels)  # ...told about each other, each is exactly itself
    for oid in (1, 2):
        assert np.array_equal(together.objects[oid].mask, labels == oid)


def test_pole_slices_of_a_few_pixels_are_kept_where_the_old_iou_test_stopped():
    nucleus = ellipsoid(12, 24, 30, 9.05, 14, 14)
    sections = nucleus.sum(axis=(1, 2))
    first = int(np.flatnonzero(sections)[0])
    assert sections[first] < 0.25 * sections[first + 1]  # a pole: a small slice after a large one
    result = propagate(OracleSegmenter(nucleus.astype(np.uint8)), {12: nucleus[12]}, Z)
    assert np.array_equal(result.mask, nucleus), result.summary()
    old = propagate(OracleSegmenter(nucleus.astype(np.uint8)), {12: nucleus[12]}, Z, preset="baseline")
    assert old.z_extent[0] > first  # the IoU of a pole with the slice before called it a jump


def test_objects_touching_the_stack_ends_stop_there():
    labels = np.zeros((Z, H, W), np.uint8)
    labels[ellipsoid(0, 24, 30, 6, 10, 10)] = 1
    labels[ellipsoid(Z - 1, 24, 30, 6, 10, 10)] = 2
    result = propagate_all(OracleSegmenter(labels), np.where(np.isin(zz, (0, Z - 1)), labels, 0), 0,
                           object_ids=[1, 2])
    assert np.array_equal(result.labels, labels), result.summary()
    assert {s.reason for s in result.objects[1].stops} >= {"stack_end"}


def test_propagate_all_writes_one_change_that_spares_other_objects():
    truth = touching_pair()
    painted = np.zeros_like(truth)
    painted[12] = truth[12]
    painted[2, 0:3, 0:3] = 7  # an object the user painted elsewhere, in the way of nobody
    painted[8][truth[8] == 1] = 9  # a user's object where object 1 would go: it must stay
    steps = []
    result = propagate_all(BleedingOracle(truth), painted, 12, object_ids=[1, 2],
                           progress=lambda done, total: steps.append((done, total)))
    change = plan_objects_change(painted, result)
    out = painted.copy()
    apply_change(out, change)
    assert (out[8][truth[8] == 1] == 9).all() and (out[2, 0:3, 0:3] == 7).all()
    expected = np.where(painted > 0, painted, truth)
    assert np.array_equal(out, expected)
    undo_change(out, change)
    assert np.array_equal(out, painted)
    assert steps[0] == (0, 2) and steps[-1] == (2, 2)


def test_objects_walking_together_each_come_out_whole_and_only_themselves():
    labels = touching_pair()
    seeds = {1: {12: labels[12] == 1}, 2: {12: labels[12] == 2}}
    steps = []
    together = propagate_objects(BleedingOracle(labels), seeds, Z, together=True,
                                 progress=lambda done, total: steps.append((done, total)))
    assert np.array_equal(together.labels, labels)
    for oid in (1, 2):
        assert np.array_equal(together.objects[oid].mask, labels == oid)
    assert steps[0] == (0, Z) and all(d <= t for d, t in steps)


def test_objects_walking_together_split_a_slice_both_reach_by_the_slice_before():
    # Two objects that are one blob beyond slice 14 (a model that cannot tell them apart there):
    # each keeps the side nearer its own mask on the slice before.
    labels = touching_pair()
    merged = labels.copy()
    merged[15:][merged[15:] > 0] = 1
    class Merging(OracleSegmenter):
        def segment(self, index, prompt):
            return SliceSegmentation(merged[index] > 0 if index >= 15 else labels[index] == prompt_id(prompt),
                                     None, 1.0)
    def prompt_id(prompt):
        x, y = prompt.points[0]
        return labels[12][int(y), int(x)]
    seeds = {1: {12: labels[12] == 1}, 2: {12: labels[12] == 2}}
    found = propagate_objects(Merging(labels), seeds, Z, together=True)
    assert not (found.objects[1].mask & found.objects[2].mask).any()
    for oid in (1, 2):  # each side went to its own object
        assert (found.labels[16] == oid).sum() > 0.8 * (labels[16] == oid).sum()


def test_propagate_all_together_cancelled_half_way_returns_what_is_done():
    truth = touching_pair()
    asked = []
    result = propagate_all(OracleSegmenter(truth), np.where(zz == 12, truth, 0), 12, together=True,
                           should_cancel=lambda: asked.append(1) or len(asked) > 5)
    assert result.cancelled
    assert not (result.labels & ~truth.astype(bool)).any()


def test_propagate_all_cancelled_half_way_returns_what_is_done():
    truth = touching_pair()
    asked = []
    result = propagate_all(OracleSegmenter(truth), np.where(zz == 12, truth, 0), 12,
                           should_cancel=lambda: asked.append(1) or len(asked) > 5)
    assert result.cancelled
    assert not (result.labels & ~truth.astype(bool)).any()  # nothing outside the objects


def tube_labels():
    truth = np.zeros((Z, H, W), np.uint8)
    cx = (20 + np.arange(Z)).astype(float)[:, None, None]
    truth[(yy - 24) ** 2 + (xx - cx) ** 2 <= 36] = 1
    truth[:, 2:6, 2:6] = 2  # another object, never to be touched
    return truth


def test_correction_mid_stack_refixes_until_it_agrees_with_what_was_there():
    truth = tube_labels()
    drawn = truth.copy()
    drawn[10:20][drawn[10:20] == 1] = 0
    drawn[10:20, 20:28, 2:14] = 1  # the object went astray on slices 10-19
    fixed = correct(OracleSegmenter(truth), drawn, 1, 14, points=[[34, 24]], point_labels=[1])
    out = drawn.copy()
    apply_change(out, fixed.change)
    assert np.array_equal(out, truth), fixed.summary()
    assert {s.reason for s in fixed.result.stops} == {"agrees_with_before"}
    assert set(fixed.result.slices) == set(range(9, 21))  # walked only until it agreed, both ways
    undo_change(out, fixed.change)
    assert np.array_equal(out, drawn)  # one undo step


def test_correction_keeps_slices_fixed_by_hand_and_clears_past_the_objects_end():
    truth = tube_labels()
    truth[18:][truth[18:] == 1] = 0  # the object ends at slice 17
    drawn = truth.copy()
    drawn[14:18][drawn[14:18] == 1] = 0
    drawn[14:22, 20:28, 30:40] = 1  # propagation went astray on slice 14 and ran on past the object's end
    drawn[12][drawn[12] == 1] = 0
    drawn[12, 20:24, 30:34] = 1  # the user's own (odd) fix of slice 12
    drawn[6][drawn[6] == 1] = 0  # the object lost on slice 6
    fixed = correct(OracleSegmenter(truth), drawn, 1, 15, points=[[35, 24]], point_labels=[1], fixed_slices=[12])
    out = drawn.copy()
    apply_change(out, fixed.change)
    assert np.array_equal(out[12], drawn[12])  # kept as the user fixed it
    assert np.array_equal(out[6], drawn[6])  # behind the fixed slice: not reached
    assert np.array_equal(out[13:], truth[13:]), fixed.summary()  # refixed, and cleared past the end
    assert fixed.cleared == (18, 19, 20, 21)
    assert (out == 2).sum() == (drawn == 2).sum()


def test_bad_input_to_the_new_functions():
    truth = tube_labels()
    oracle = OracleSegmenter(truth)
    with pytest.raises(ValueError, match="not in the labels"):
        correct(oracle, truth, 5, 3, points=[[1, 1]], point_labels=[1])
    with pytest.raises(ValueError, match="outside the slice"):
        correct(oracle, truth, 1, 3, points=[[500, 1]], point_labels=[1])
    with pytest.raises(ValueError, match="nothing of object 1"):
        correct(oracle, truth, 1, 3, mask=np.zeros((H, W), bool))
    with pytest.raises(ValueError, match="holds no object"):
        propagate_all(oracle, np.zeros_like(truth), 0)
    with pytest.raises(ValueError, match="stack_through"):
        propagate_all(oracle, truth[None], 0)
    with pytest.raises(ValueError, match="no object to propagate"):
        propagate(oracle, {3: np.zeros((H, W), bool)}, Z)
    with pytest.raises(ValueError, match="others"):
        propagate(oracle, {3: truth[3] == 1}, Z, others=np.zeros((2, H, W), int))
    with pytest.raises(ValueError, match="preset"):
        propagate(oracle, {3: truth[3] == 1}, Z, preset="fast")


def test_signal_fit_cuts_a_blurred_ghost_to_the_object():
    from scipy import ndimage

    disk = (yy[0] - 24) ** 2 + (xx[0] - 30) ** 2 <= 100
    plane = ndimage.gaussian_filter(disk * 1000.0 + 100, 1.5)
    level = calibrate(plane, disk)
    assert level is not None and level.bright and level.calibration_iou > 0.9
    ghost = (yy[0] - 24) ** 2 + (xx[0] - 30) ** 2 <= 196  # a model's outline of the blur around it
    fitted = fit_to_signal(ghost, plane, level)
    assert (fitted & disk).sum() / (fitted | disk).sum() > 0.9
    assert calibrate(np.random.default_rng(0).normal(size=(H, W)), disk) is None  # no edge in noise


class BlobModel(OracleSegmenter):
    """A model that outlines the blurred blob under the box on a slice it can show: it follows two nuclei
    stacked along z as one."""

    def __init__(self, labels, image):
        super().__init__(labels)
        self.image = image

    def slice_image(self, index):
        return self.image[index]

    def segment(self, index, prompt):
        from scipy import ndimage

        self.calls.append(index)
        blob = ndimage.binary_dilation(self.labels[index] > 0, iterations=2) | (self.image[index] > 300)
        pieces, _ = ndimage.label(blob)
        x, y = prompt.points[0]
        return SliceSegmentation(pieces == pieces[int(y), int(x)] if pieces[int(y), int(x)] else blob & False)


def test_walk_stops_where_the_signal_rises_into_the_next_nucleus_along_z():
    from scipy import ndimage

    upper = ellipsoid(7, 24, 30, 5.5, 12, 12)
    lower = ellipsoid(17, 24, 30, 5.5, 12, 12) & ~upper
    labels = np.zeros((Z, H, W), np.uint8)
    labels[upper], labels[lower] = 1, 2
    image = ndimage.gaussian_filter(upper * 1000.0 + lower * 1000.0, (1.5, 1, 1)) + 100
    model = BlobModel(labels, image)
    result = propagate(model, {7: upper[7]}, Z)
    assert not (result.mask & lower).sum() > 0.05 * result.mask.sum(), result.summary()
    assert "signal_rose_again" in {s.reason for s in result.stops}
    old = propagate(model, {7: upper[7]}, Z, preset="baseline")
    assert (old.mask & lower).sum() > 0.3 * lower.sum()  # the walk before slid into the lower nucleus


class CreepingOracle(OracleSegmenter):
    """A model that creeps: it answers with the object under the point plus any object within 3 pixels of the
    previous mask (a stand-in for SAM at a nucleus' end where the next nucleus along z starts)."""

    def segment(self, index, prompt):
        from scipy import ndimage
        plane = self.labels[index]
        x, y = prompt.points[0]
        near = ndimage.binary_dilation(prompt.previous_mask, iterations=3)
        return SliceSegmentation((plane > 0) & (near | (plane == plane[int(y), int(x)])), None, 1.0)


def test_propagate_all_stops_a_walk_that_grows_into_the_next_object_along_z():
    labels = np.zeros((Z, H, W), np.uint16)
    small = ellipsoid(8, 24, 24, 5, 8, 8)
    labels[small], labels[ellipsoid(15, 24, 30, 5, 14, 18) & ~small] = 1, 2
    seeds = {1: {8: labels[8] == 1}}  # only the small one is clicked: its walk up meets the big one
    crept = propagate_objects(CreepingOracle(labels), seeds, Z, max_regrowth=None).labels == 1
    stopped = propagate_objects(CreepingOracle(labels), seeds, Z).labels == 1
    assert (crept & (labels == 2)).sum() > (labels == 1).sum()  # without the stop it eats the big one
    assert (stopped & (labels == 2)).sum() < 0.2 * (labels == 1).sum()
    assert (stopped & small).sum() > 0.9 * small.sum()


def test_a_voxel_two_walks_claim_goes_to_the_walk_it_continues():
    from napari_sam.volume.propagate import PropagationResult, SliceOutcome
    from napari_sam.volume.propagation.objects import _one_to_one

    shape = (6, 20, 20)
    left, right = np.zeros(shape[1:], bool), np.zeros(shape[1:], bool)
    left[5:15, 2:9], right[5:15, 11:18] = True, True

    def walked(annotated, slices):
        result = PropagationResult(mask=np.zeros(shape, bool))
        for z, where in slices.items():
            result.mask[z] = where
            result.slices[z] = SliceOutcome(z, "annotated" if z == annotated else "propagated", int(where.sum()), annotated)
        return result

    # Object 1 (clicked on slice 2) slid onto object 2's place on slice 3, one step from its click;
    # object 2 (clicked on slice 5) comes down to slice 3 through its own slice 4, two steps away.
    slid = walked(2, {1: left, 2: left, 3: right})
    own = walked(5, {3: right, 4: right, 5: right})
    seeds = np.zeros(shape, np.int64)
    seeds[2][left], seeds[5][right] = 1, 2
    labels = _one_to_one({1: slid, 2: own}, shape, seeds)
    assert (labels[3][right] == 2).all()  # the walk it continues, not the nearer one that jumped there
    assert (labels[1][left] == 1).all() and (labels[4][right] == 2).all() and not (labels[3] == 1).any()
