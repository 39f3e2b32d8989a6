"""Linking 2D objects through z, tested exactly with an oracle segmenter that knows the true objects."""

import numpy as np
import pytest

from napari_sam.auto import AutomaticMaskGenerator
from napari_sam.auto.stack import link_slices, segment_stack
from napari_sam.model import load_model
from napari_sam.synthetic import make_nuclei_3d


def _columns(n_slices=8, shape=(64, 64), seed=0):
    """Objects made of discs drifting by a pixel a slice: neighbouring sections overlap at IoU > 0.6."""
    rng = np.random.default_rng(seed)
    vol = np.zeros((n_slices, *shape), np.uint32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = [(14, 14), (14, 46), (46, 14), (46, 46), (30, 30)]
    for k, (cy, cx) in enumerate(centres, start=1):
        z0, z1 = sorted(rng.choice(n_slices + 1, 2, replace=False))
        for z in range(z0, z1):
            disc = (yy - cy - (z - z0) * 0.5) ** 2 + (xx - cx) ** 2 <= 6.5**2
            vol[z][disc & (vol[z] == 0)] = k
    return vol


def _oracle(vol, seed=1, drop=()):
    """Each slice's true objects under new, random 2D label numbers; ``drop``: (z, label) pairs missed."""
    rng = np.random.default_rng(seed)

    def segment(z):
        flat = vol[z].copy()
        for dz, lab in drop:
            if dz == z:
                flat[flat == lab] = 0
        lut = np.zeros(vol.max() + 1, np.uint32)
        lut[1:] = rng.permutation(vol.max()) + 100
        return np.where(flat > 0, lut[flat], 0)

    return segment


def _same_up_to_renumbering(a, b):
    pairs = set(zip(a[a > 0].tolist(), b[a > 0].tolist()))
    assert np.array_equal(a > 0, b > 0)
    assert len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


@pytest.mark.parametrize("seed", range(4))
def test_linking_recovers_the_true_objects(seed):
    vol = _columns(seed=seed)
    result = link_slices(_oracle(vol, seed), len(vol), link_iou=0.5)
    _same_up_to_renumbering(vol, result.labels)
    assert result.n_objects == len(np.unique(vol[vol > 0])) and not result.cancelled


def test_a_gap_of_one_slice_is_closed():
    vol = np.zeros((5, 30, 30), np.uint32)
    vol[:, 5:20, 5:20] = 1
    result = link_slices(_oracle(vol, drop=[(2, 1)]), 5, link_iou=0.5, max_gap=1)
    _same_up_to_renumbering(vol, result.labels)
    without = link_slices(_oracle(vol, drop=[(2, 1)]), 5, link_iou=0.5, max_gap=0)
    assert without.n_objects == 2 and not without.labels[2].any()


def test_matching_is_one_to_one():
    vol = np.zeros((2, 30, 40), np.uint32)
    vol[0, 5:25, 5:35] = 1  # one wide object ...
    flat1 = np.zeros((30, 40), np.uint32)
    flat1[5:25, 5:19] = 1  # ... becomes two halves in the next slice
    flat1[5:25, 21:35] = 2
    result = link_slices(lambda z: vol[0] if z == 0 else flat1, 2, link_iou=0.3)
    assert result.n_objects == 3 - 1  # one half continues the object, the other is new
    assert len(np.unique(result.labels[1][result.labels[1] > 0])) == 2


def test_short_objects_are_removed():
    vol = _columns(seed=2)
    extent = {k: len({z for z in range(len(vol)) if (vol[z] == k).any()}) for k in np.unique(vol[vol > 0])}
    result = link_slices(_oracle(vol), len(vol), link_iou=0.5, min_z_extent=4)
    assert result.n_objects == sum(e >= 4 for e in extent.values())
    assert 0 < result.n_objects < len(extent)  # the test can fail both ways


def test_cancel_keeps_the_finished_slices():
    vol = _columns(seed=0)
    calls = []
    result = link_slices(_oracle(vol), len(vol), should_cancel=lambda: calls[-1] >= 3,
                         progress=lambda d, t: calls.append(d))
    assert result.cancelled and result.slices_done == 3 and not result.labels[3:].any()


def test_bad_linking_settings():
    with pytest.raises(ValueError, match="link_iou"):
        link_slices(lambda z: None, 2, link_iou=0)
    with pytest.raises(ValueError, match="max_gap"):
        link_slices(lambda z: None, 2, max_gap=3)


def test_segment_stack_with_the_demo_model():
    stack, truth = make_nuclei_3d((3, 64, 64), n_objects=(4, 6), seed=2)
    stack[1] = 0  # a blank slice is skipped, not segmented
    seen = []
    g = AutomaticMaskGenerator(load_model("demo"), points_per_side=8, pred_iou_thresh=0.5, stability_score_thresh=0.7)
    result = segment_stack(stack, g, on_slice=lambda z, records: seen.append(z))
    assert result.labels.shape == stack.shape and result.labels.dtype == np.uint32
    assert seen == [0, 2] and result.empty_slices == [1] and result.n_objects > 0
    with pytest.raises(ValueError, match="single 2D plane"):
        segment_stack(stack[0], g)
