import numpy as np
import pytest

from napari_sam.model import SamPredictor
from napari_sam.synthetic import make_nuclei_3d
from napari_sam.volume import EmbeddingStore, StackEmbeddings
from napari_sam.volume.propagate import (
    SamSliceSegmenter,
    annotations_from_labels,
    propagate,
    propagate_with_sam,
)
from volume_helpers import OracleSegmenter, tiny_model

Z, H, W = 30, 64, 64
zz, yy, xx = np.mgrid[0:Z, 0:H, 0:W]


def ellipsoid(cz=15, cy=32, cx=30, rz=8.5, ry=14, rx=10):
    return ((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def tube(centre_x, radius=6, cy=32, z_range=(0, Z)):
    """A tube along z whose centre column at each slice is centre_x(z)."""
    cx = np.array([centre_x(z) for z in range(Z)], dtype=float)[:, None, None]
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    inside &= (zz >= z_range[0]) & (zz < z_range[1])
    return inside


def run(truth, annotated, **options):
    oracle = OracleSegmenter(truth.astype(np.uint8))
    anns = {z: truth[z] for z in annotated}
    return propagate(oracle, anns, **options), oracle


def stop_of(result, annotation, direction):
    (stop,) = [s for s in result.stops if s.annotation == annotation and s.direction == direction]
    return stop


def test_ellipsoid_is_recovered_exactly_and_stops_at_its_ends():
    truth = ellipsoid()
    first, last = np.flatnonzero(truth.any(axis=(1, 2)))[[0, -1]]
    result, oracle = run(truth, [15], iou_threshold=0.2)
    np.testing.assert_array_equal(result.mask, truth)
    assert result.z_extent == (first, last) == (7, 23)
    down, up = stop_of(result, 15, -1), stop_of(result, 15, +1)
    assert (down.reason, down.rejected_slice, down.last_slice) == ("vanished", 6, 7)
    assert (up.reason, up.rejected_slice, up.last_slice) == ("vanished", 24, 23)
    assert sorted(oracle.calls) == list(range(6, 15)) + list(range(16, 25))  # nothing beyond the ends
    assert result.slices[15].status == "annotated" and result.propagated_slices == [
        z for z in range(7, 24) if z != 15
    ]
    assert result.slices[20].prompted_from == 19 and result.slices[10].prompted_from == 11


def test_tube_bending_through_z_is_followed_to_both_stack_ends():
    truth = tube(lambda z: 32 + 20 * np.sin(2 * np.pi * z / Z))  # moves ~4 px per slice at most
    result, _ = run(truth, [10])
    np.testing.assert_array_equal(result.mask, truth)
    assert {s.reason for s in result.stops} == {"stack_end"}
    assert stop_of(result, 10, -1).last_slice == 0 and stop_of(result, 10, +1).last_slice == Z - 1


def test_object_that_ends_mid_stack():
    truth = tube(lambda z: 30 + z / 3, z_range=(0, 18))
    result, oracle = run(truth, [5])
    np.testing.assert_array_equal(result.mask, truth)
    assert stop_of(result, 5, -1).reason == "stack_end"
    up = stop_of(result, 5, +1)
    assert (up.reason, up.rejected_slice) == ("vanished", 18)
    assert max(oracle.calls) == 18


def test_two_annotations_fill_from_both_ends_meeting_in_the_middle():
    truth = tube(lambda z: 32 + 15 * np.cos(np.pi * z / Z), z_range=(3, 28))
    result, oracle = run(truth, [8, 20])
    np.testing.assert_array_equal(result.mask, truth)
    assert sorted(oracle.calls) == sorted(set(oracle.calls))  # every slice asked once
    # slices 9..14 are taken from slice 8, 15..19 from slice 20 (the nearer annotation; ties go down)
    assert all(result.slices[z].annotation == 8 for z in range(9, 15))
    assert all(result.slices[z].annotation == 20 for z in range(15, 20))
    assert result.slices[15].prompted_from == 16 and result.slices[14].prompted_from == 13
    assert stop_of(result, 8, +1).reason == "met_other_walk"
    assert stop_of(result, 8, -1).reason == "vanished" and stop_of(result, 20, +1).reason == "vanished"
    assert result.z_extent == (3, 27)


def test_walk_from_the_far_annotation_takes_over_where_the_near_one_stopped():
    # The tube jumps sideways by 30 px at slice 11: the walk up from slice 6 loses it there,
    # the walk down from slice 20 follows it past the middle (13) down to slice 11.
    truth = tube(lambda z: 15 if z < 11 else 45, radius=5)
    result, _ = run(truth, [6, 20])
    np.testing.assert_array_equal(result.mask, truth)
    up = stop_of(result, 6, +1)
    assert (up.reason, up.rejected_slice, up.last_slice) == ("vanished", 11, 10)
    back = stop_of(result, 20, -1)
    assert (back.reason, back.last_slice) == ("met_other_walk", 11)
    assert all(result.slices[z].annotation == 20 for z in range(11, 20))


def test_iou_threshold_stops_a_jump_to_another_object():
    labels = np.zeros((Z, H, W), np.uint8)
    disc_a = (yy[0] - 32) ** 2 + (xx[0] - 32) ** 2 <= 100
    disc_b = (yy[0] - 32) ** 2 + (xx[0] - 46) ** 2 <= 100  # centre of A lies outside B; A's box overlaps B
    labels[:15][:, disc_a] = 1
    labels[15:][:, disc_b] = 2
    oracle = OracleSegmenter(labels)
    result = propagate(oracle, {5: labels[5] == 1}, iou_threshold=0.25)
    np.testing.assert_array_equal(result.mask, labels == 1)
    up = stop_of(result, 5, +1)
    assert (up.reason, up.rejected_slice) == ("iou_below_threshold", 15)
    assert 0 < up.iou < 0.25
    assert "IoU" in up.describe()
    # A lower threshold lets the walk jump to the other object.
    lenient = propagate(OracleSegmenter(labels), {5: labels[5] == 1}, iou_threshold=0.01)
    np.testing.assert_array_equal(lenient.mask, labels > 0)


def test_regrowth_stops_a_slide_into_an_object_stacked_below():
    # Two ellipsoids on top of each other along z, touching and shifted a little in x: the walk
    # slides from one into the other with a high slice-to-slice IoU; only the area profile tells.
    labels = ellipsoid(cz=8, rz=6, cx=30).astype(np.uint8)
    labels[ellipsoid(cz=20, rz=6.5, cx=34) & (labels == 0)] = 2
    oracle = OracleSegmenter(np.where(labels > 0, 1, 0))  # the model sees one merged blob
    slid = propagate(oracle, {8: labels[8] == 1}, iou_threshold=0.1)
    assert slid.z_extent[1] > 20  # without the area rule it walks into the second object
    result = propagate(OracleSegmenter(np.where(labels > 0, 1, 0)), {8: labels[8] == 1}, iou_threshold=0.1,
                       max_regrowth=0.25)
    up = stop_of(result, 8, +1)
    assert up.reason == "regrowth" and "grew again" in up.describe()
    assert 13 <= up.last_slice <= 15  # at the waist between the two objects
    # a convex object alone never triggers it
    alone = propagate(OracleSegmenter(ellipsoid().astype(np.uint8)), {15: ellipsoid()[15]}, iou_threshold=0.2,
                      max_regrowth=0.0)
    np.testing.assert_array_equal(alone.mask, ellipsoid())


def test_generated_nuclei_are_recovered_from_their_largest_slice():
    # Separate nuclei (make_nuclei_3d's tilted, anisotropic ellipsoids): only a tiny pole
    # slice, far smaller than its neighbour, may fall under the IoU threshold.
    for seed in (3, 4):
        _, labels = make_nuclei_3d((24, 96, 96), n_objects=6, seed=seed, noise=False, touching=0.0)
        for label in np.unique(labels)[1:]:
            obj = labels == label
            best = int(np.argmax(obj.sum(axis=(1, 2))))
            result = propagate(OracleSegmenter(labels), {best: obj[best]})
            assert not (result.mask & ~obj).any()  # never anything of another nucleus
            assert obj[result.mask].sum() / obj.sum() > 0.95


def test_annotation_is_kept_as_given_and_max_distance_limits_the_walk():
    truth = tube(lambda z: 32)
    painted = truth[12].copy()
    painted[30:34, 28:30] = False  # the user's own edit, differing from what the model would give
    result = propagate(OracleSegmenter(truth.astype(np.uint8)), {12: painted}, max_distance=3)
    np.testing.assert_array_equal(result.mask[12], painted)
    assert result.z_extent == (9, 15)
    assert {s.reason for s in result.stops} == {"max_distance"}


def test_progress_and_cancel():
    truth = tube(lambda z: 32)
    seen = []
    result = propagate(OracleSegmenter(truth.astype(np.uint8)), {0: truth[0]}, progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, Z - 1) and seen[-1] == (Z - 1, Z - 1)
    asked = []
    oracle = OracleSegmenter(truth.astype(np.uint8))
    cancelled = propagate(oracle, {0: truth[0]}, should_cancel=lambda: asked.append(1) or len(asked) > 4)
    assert cancelled.cancelled and len(oracle.calls) == 4
    assert cancelled.z_extent == (0, 4) and "cancelled" in {s.reason for s in cancelled.stops}


def test_bad_input():
    truth = tube(lambda z: 32).astype(np.uint8)
    oracle = OracleSegmenter(truth)
    with pytest.raises(ValueError, match="no object to propagate"):
        propagate(oracle, {3: np.zeros((H, W), bool)})
    with pytest.raises(ValueError, match="no object to propagate"):
        propagate(oracle, {})
    with pytest.raises(ValueError, match="slice 40 does not exist"):
        propagate(oracle, {40: truth[0]})
    with pytest.raises(ValueError, match="2D mask"):
        propagate(oracle, {1: truth[:2]})
    with pytest.raises(ValueError, match="iou_threshold"):
        propagate(oracle, {1: truth[1]}, iou_threshold=1.5)
    with pytest.raises(ValueError, match="max_regrowth"):
        propagate(oracle, {1: truth[1]}, max_regrowth=-1)
    with pytest.raises(ValueError, match="prompt must be"):
        propagate(oracle, {1: truth[1]}, prompt=("boxes",))
    with pytest.raises(TypeError, match="segment"):
        propagate(object(), {1: truth[1]}, 5)
    with pytest.raises(ValueError, match="label 3 is not"):
        annotations_from_labels(truth, 3)
    assert set(annotations_from_labels(truth, 1, slices=[2, 4])) == {2, 4}


def test_tiny_random_model_runs_end_to_end(tmp_path):
    img = np.zeros((6, 48, 64), np.uint8)
    for z in range(6):
        img[z, 14:34, 20 + z : 44 + z] = 200  # a box that moves: every slice differs
    predictor = SamPredictor(tiny_model(), device="cpu", precision="fp32")
    annotation = img[2] > 0
    shown = predictor.set_image(img[2])  # the slice the user looks at
    result = propagate_with_sam(
        predictor, img, {2: annotation}, EmbeddingStore(tmp_path), iou_threshold=0.0, prompt=("box", "point", "mask")
    )
    assert result.mask.shape == img.shape and result.mask.dtype == bool
    np.testing.assert_array_equal(result.mask[2], annotation)
    assert len(result.stops) == 2
    assert predictor.embedding.features.equal(shown.features)  # clicks on the shown slice still work
    # the walks computed (and cached) the embeddings of the slices they reached
    reached = {s.rejected_slice for s in result.stops if s.rejected_slice is not None} | set(result.slices) - {2}
    assert len(list(tmp_path.iterdir())) == len(reached)
    emb = StackEmbeddings(predictor, img, EmbeddingStore(tmp_path))
    agreement = propagate(SamSliceSegmenter(emb, pick="agreement"), {2: annotation}, iou_threshold=0.0)
    assert agreement.mask.shape == img.shape


def test_a_regrowth_before_the_widest_slice_can_be_clipped_to_the_previous_mask_instead_of_ending_the_walk(monkeypatch):
    # A small nucleus touching a big one: on every slice but the clicked one the model sees them as one blob,
    # twice the clicked mask at once. Before the walk has passed its widest slice that is the neighbour bleeding
    # in, not a slide into an object stacked along z: with walk.REGROWTH_CLIP the answer is kept within reach of
    # the mask before; by default (off) the walk ends there.
    from napari_sam.volume.propagation import walk

    zz, ys, xs = np.mgrid[0:16, 0:48, 0:64]
    small = ((zz - 8) / 5.0) ** 2 + ((ys - 24) / 6.0) ** 2 + ((xs - 20) / 6.0) ** 2 <= 1
    big = (((ys - 24) / 12.0) ** 2 + ((xs - 38) / 12.0) ** 2 <= 1) & ~small
    seen = np.where(small | big, 1, 0)
    seen[8][big[8]] = 2
    iou = lambda a, b: (a & b).sum() / (a | b).sum()  # noqa: E731
    stopped = propagate(OracleSegmenter(seen), {8: small[8]}, max_regrowth=1.0)
    assert [s.reason for s in stopped.stops] == ["regrowth", "regrowth"]
    assert np.flatnonzero(stopped.mask.any(axis=(1, 2))).tolist() == [8]
    monkeypatch.setattr(walk, "REGROWTH_CLIP", True)
    result = propagate(OracleSegmenter(seen), {8: small[8]}, max_regrowth=1.0)
    assert iou(result.mask[7], small[7]) > 0.8 and iou(result.mask[9], small[9]) > 0.8
    assert iou(result.mask, small) > 0.6
