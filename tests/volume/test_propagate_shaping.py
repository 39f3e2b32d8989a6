"""The walk's per-slice options measured in issue 18: growing a mask along the signal, splitting contested pixels."""

import dataclasses

import numpy as np
from scipy import ndimage

from napari_sam.volume.propagate import PropagationResult, SliceOutcome, propagate
from napari_sam.volume.propagation.slices import SliceSegmentation
from napari_sam.volume.propagation import objects, shaping, signal
from napari_sam.volume.propagation.contested import split_contested
from napari_sam.volume.propagation.signal import calibrate, fit_to_signal

H, W = 48, 64
yy, xx = np.mgrid[0:H, 0:W]


def disk(cy, cx, r):
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_a_mask_inside_the_object_grows_along_its_signal_up_to_the_reach_and_only_where_allowed():
    nucleus = disk(24, 30, 12)
    plane = ndimage.gaussian_filter(nucleus * 1000.0 + 100, 1.0)
    level = calibrate(plane, nucleus)
    small = disk(24, 30, 8)  # a model's mask lying inside the object
    assert np.array_equal(fit_to_signal(small, plane, level), small)  # the level only cuts by default
    grown = fit_to_signal(small, plane, level, grow=2)
    assert np.array_equal(grown, ndimage.binary_dilation(small, iterations=2) & level.inside(plane))
    full = fit_to_signal(small, plane, level, grow=8)
    assert (full & nucleus).sum() / (full | nucleus).sum() > 0.9  # grown to the object's edge, not beyond
    assert not (full & ~ndimage.binary_dilation(nucleus, iterations=1)).any()
    left = xx < 30
    assert not (fit_to_signal(small, plane, level, grow=8, allowed=left) & ~left & ~small).any()


def touching_slice():
    a, b = disk(24, 22, 10), disk(24, 41, 10)
    b &= ~a
    plane = ndimage.gaussian_filter((a | b) * 1000.0 + 100, 1.0)
    return a, b, plane


def test_pixels_two_objects_took_are_split_along_the_dim_valley_between_them():
    a, b, plane = touching_slice()
    wide_a, wide_b = ndimage.binary_dilation(a, iterations=5), ndimage.binary_dilation(b, iterations=5)
    owner = split_contested(plane, [wide_a, wide_b], [a, b])
    contested = wide_a & wide_b
    assert contested.sum() > 50
    assert (owner[contested & a] == 0).mean() > 0.95 and (owner[contested & b] == 1).mean() > 0.95
    assert (owner[~contested] == -1).all()  # only the contested pixels are decided here
    assert (split_contested(plane, [a, b], [a, b]) == -1).all()  # nothing contested: nothing to split


def test_propagate_all_gives_contested_voxels_by_the_watershed_when_it_is_on(monkeypatch):
    a, b, plane = touching_slice()
    shape = (3, H, W)
    wide_a = ndimage.binary_dilation(a, iterations=6)  # object 1's walk bled over object 2 on slice 1

    def walked(annotated, masks):
        result = PropagationResult(mask=np.zeros(shape, bool))
        for z, where in masks.items():
            result.mask[z] = where
            result.slices[z] = SliceOutcome(z, "annotated" if z == annotated else "propagated", int(where.sum()), annotated)
        return result

    # Object 1 clicked on slice 0, object 2 on slice 2: both reach slice 1 one step away, continuous.
    results = {1: walked(0, {0: wide_a, 1: wide_a}), 2: walked(2, {1: b, 2: b})}
    seeds = np.zeros(shape, np.int64)
    seeds[0][wide_a], seeds[2][b] = 1, 2
    monkeypatch.setattr(objects, "SPLIT_BY_WATERSHED", False)
    tied = objects._one_to_one(results, shape, seeds, lambda z: plane)
    assert (tied[1][wide_a & b] == 1).all()  # off: a tie of steps and continuity goes to the first claim
    monkeypatch.setattr(objects, "SPLIT_BY_WATERSHED", True)
    split = objects._one_to_one(results, shape, seeds, lambda z: plane)
    assert (split[1][b] == 2).mean() > 0.95 and (split[1][a] == 1).all()
    assert np.array_equal(split[[0, 2]], seeds[[0, 2]])  # annotated voxels stay their object's


def test_the_steepest_level_of_a_blurred_nucleus_lies_on_its_edge():
    nucleus = disk(24, 30, 12)
    plane = ndimage.gaussian_filter(nucleus * 1000.0 + 100, 1.0)
    level = calibrate(plane, nucleus)
    steepest = level.around_signal + level.steepest_fraction * (level.inside_signal - level.around_signal)
    cut = ndimage.gaussian_filter(plane, 1.0) >= steepest
    assert 0.2 < level.steepest_fraction < 0.8
    assert (cut & nucleus).sum() / (cut | nucleus).sum() > 0.9
    flat = np.full((H, W), 500.0)
    flat[nucleus] = 600.0  # no blur: the steepest pixels straddle the rim
    assert np.isfinite(calibrate(flat, nucleus).steepest_fraction)


def test_near_its_widest_slice_a_mask_inside_the_object_grows_one_pixel_along_its_signal(monkeypatch):
    nucleus = disk(24, 30, 12)
    plane = ndimage.gaussian_filter(nucleus * 1000.0 + 100, 1.0)
    level = calibrate(plane, nucleus)
    small = disk(24, 30, 9)  # the model's mask, inside the object
    fraction = shaping.core_fraction(level)
    assert fraction is not None and fraction < signal.EDGE_FRACTION
    area = int(small.sum())
    grown = shaping.shape_answer(small, small, plane=plane, level=level, largest=area)
    assert np.array_equal(grown, fit_to_signal(small, plane, level, grow=shaping.CORE_REACH, fraction=fraction))
    assert grown.sum() > small.sum()
    assert not (grown & ~ndimage.binary_dilation(small, iterations=shaping.CORE_REACH)).any()
    assert (grown & nucleus).sum() / (grown | nucleus).sum() > (small & nucleus).sum() / (small | nucleus).sum()
    # away from the widest slice (a small part of the largest cross-section) the level only cuts
    assert np.array_equal(shaping.shape_answer(small, small, plane=plane, level=level, largest=3 * area), small)
    # nor next to another object
    right = xx > 30
    beside = shaping.shape_answer(small, small, plane=plane, level=level, largest=area, others=right & ~small)
    assert not (beside & right & ~small).any()
    # a level whose steepest point lies high (a small nucleus, no plateau) is not grown to
    assert shaping.core_fraction(dataclasses.replace(level, steepest_fraction=0.6)) is None
    monkeypatch.setattr(shaping, "CORE_BELOW_STEEPEST", None)
    assert np.array_equal(shaping.shape_answer(small, small, plane=plane, level=level, largest=area), small)


class _Echo:
    """Answers every slice with the mask it was prompted from, on the same blurred nucleus."""

    def __init__(self, plane, n):
        self.plane, self.n = plane, n

    def __len__(self):
        return self.n

    def slice_image(self, index):
        return self.plane

    def segment(self, index, prompt):
        return SliceSegmentation(prompt.previous_mask.copy())


def test_the_walk_follows_the_masks_before_growth_so_it_does_not_compound_from_slice_to_slice():
    nucleus = disk(24, 30, 12)
    plane = ndimage.gaussian_filter(nucleus * 1000.0 + 100, 1.0)
    small = disk(24, 30, 9)
    result = propagate(_Echo(plane, 6), {0: small}, 6)
    level = calibrate(plane, small)
    grown = fit_to_signal(small, plane, level, grow=shaping.CORE_REACH, fraction=shaping.core_fraction(level))
    assert grown.sum() > small.sum()
    for z in range(1, 6):  # each slice grown once from the walk's own mask, never again from the grown one
        assert np.array_equal(result.mask[z], grown), z


def test_a_small_nucleus_annotated_too_wide_gets_its_edge_level_raised_toward_its_steepest_level():
    # a small blurred nucleus whose annotation reaches 2 px beyond it: the median inside is dragged down by the rim,
    # so 0.4 of the contrast lies far out; the steepest level (high here) less EDGE_BELOW_STEEPEST cuts nearer
    nucleus = disk(24, 30, 6)
    plane = ndimage.gaussian_filter(nucleus * 1000.0 + 100, 1.5)
    level = calibrate(plane, disk(24, 30, 8))
    fraction = (level.level - level.around_signal) / (level.inside_signal - level.around_signal)
    assert level.steepest_fraction > 0.55
    assert abs(fraction - (level.steepest_fraction - signal.EDGE_BELOW_STEEPEST)) < 1e-6
    iou = lambda m: (m & nucleus).sum() / (m | nucleus).sum()  # noqa: E731
    flat = level.around_signal + signal.EDGE_FRACTION * (level.inside_signal - level.around_signal)
    assert iou(level.inside(plane)) > iou(ndimage.gaussian_filter(plane, 1.0) >= flat) + 0.05
    # a large nucleus annotated well keeps the edge at EDGE_FRACTION: its steepest level lies near it
    big = disk(24, 30, 12)
    plane = ndimage.gaussian_filter(big * 1000.0 + 100, 1.0)
    level = calibrate(plane, big)
    fraction = (level.level - level.around_signal) / (level.inside_signal - level.around_signal)
    assert abs(fraction - signal.EDGE_FRACTION) < 1e-6
