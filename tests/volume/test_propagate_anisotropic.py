"""Anisotropic stacks: the walk's per-slice limits follow the distance between slices (z_spacing)."""

import numpy as np
import pytest

from napari_sam.synthetic import make_nuclei_3d
from napari_sam.volume.propagate import propagate, propagate_objects
from napari_sam.volume.propagation.anisotropy import REFERENCE_Z_SPACING, z_spacing_from_scale
from napari_sam.volume.propagation.shaping import grow_limit
from volume_helpers import OracleSegmenter


def tilted_cigar(z_step, tilt=0.8, a=30.0, b=8.0, size=96):
    """An elongated nucleus tilted out of the slice plane, sampled every ``z_step`` pixel widths along z.

    Its cross-sections move sideways by about ``z_step`` times a constant per slice, so the reach allowed
    from one slice to the next must grow with the slice distance."""
    n = int(round(64 / z_step))
    z, y, x = np.mgrid[0:n, 0:size, 0:size].astype(float)
    z, y, x = (z - (n - 1) / 2) * z_step, y - size / 2, x - size / 2
    c, s = np.cos(tilt), np.sin(tilt)
    along, across = c * x + s * z, -s * x + c * z
    return (along / a) ** 2 + (y / b) ** 2 + (across / b) ** 2 <= 1


def from_widest(truth, **options):
    best = int(np.argmax(truth.sum(axis=(1, 2))))
    return propagate(OracleSegmenter(truth.astype(np.uint8)), {best: truth[best]}, **options)


def test_the_limits_scale_with_the_slice_distance():
    disc = np.zeros((96, 96), bool)
    disc[np.hypot(*np.mgrid[-48:48, -48:48]) <= 20] = True
    assert grow_limit(disc) == grow_limit(disc, REFERENCE_Z_SPACING) == 2
    assert grow_limit(disc, 4.0) == 5  # twice the distance, twice the reach (rounded)
    assert grow_limit(disc, 1.0) == 1
    large = np.hypot(*np.mgrid[-48:48, -48:48]) <= 40
    assert grow_limit(large) == 4 and grow_limit(large, 4.0) == 8  # the cap (4 at the reference) scales too


def test_a_tilted_nucleus_4x_deeper_than_wide_stays_whole_with_its_spacing():
    # With the slices 2 pixels apart (the reference) the default walk has it whole ...
    np.testing.assert_array_equal(from_widest(tilted_cigar(2.0)).mask, tilted_cigar(2.0))
    # ... 4 pixels apart, the reference limits cut its leading edge on every slice past its widest ...
    deep = tilted_cigar(4.0)
    cut = from_widest(deep).mask
    assert not (cut & ~deep).any() and cut.sum() < deep.sum()
    # ... and with the stack's spacing given the walk takes it whole, as at 1 pixel apart.
    np.testing.assert_array_equal(from_widest(deep, z_spacing=4.0).mask, deep)
    np.testing.assert_array_equal(from_widest(tilted_cigar(1.0), z_spacing=1.0).mask, tilted_cigar(1.0))


def test_generated_anisotropic_nuclei_are_whole_and_never_take_a_neighbour():
    for seed in (3, 5):
        _, labels = make_nuclei_3d((16, 96, 96), n_objects=6, seed=seed, noise=False, touching=0.0, z_step=4.0)
        seeds = {}
        for label in np.unique(labels)[1:]:
            obj = labels == label
            best = int(np.argmax(obj.sum(axis=(1, 2))))
            np.testing.assert_array_equal(from_widest(obj, z_spacing=4.0).mask, obj)
            seeds[int(label)] = {best: obj[best]}
        together = propagate_objects(OracleSegmenter(labels), seeds, z_spacing=4.0)
        np.testing.assert_array_equal(together.labels, labels)


@pytest.mark.parametrize("bad", [0, -4.0, float("nan"), float("inf")])
def test_a_bad_spacing_is_refused_with_a_clear_message(bad):
    truth = tilted_cigar(4.0)
    with pytest.raises(ValueError, match="z_spacing .* must be a finite number above 0"):
        from_widest(truth, z_spacing=bad)
    with pytest.raises(TypeError, match="z_spacing .* must be a number"):
        from_widest(truth, z_spacing="4x")


def test_spacing_from_an_image_layers_scale():
    assert z_spacing_from_scale((4.0, 1.0, 1.0), 0) == 4.0
    assert z_spacing_from_scale((2.0, 0.25, 0.25), 0) == 8.0  # micrometres: 2 um slices, 0.25 um pixels
    assert z_spacing_from_scale((1.0, 3.0, 0.5, 0.5), 1) == 6.0  # (t, z, y, x): the walked axis
    assert z_spacing_from_scale((1.0, 1.0, 1.0), 0) is None  # napari's default: nobody gave the voxel size
    assert z_spacing_from_scale((-4.0, 1.0, 1.0), 0) == 4.0  # napari shows the axis flipped: same distance
    assert z_spacing_from_scale((4.0, -0.5, 0.5), 0) == 8.0
    assert z_spacing_from_scale((-1.0, 1.0, -1.0), 0) is None  # flipped, but still nobody's voxel size
    for scale, words in (((0.0, 1.0, 1.0), "size of 0.0 on axis 0"), ((-0.0, 1.0, 1.0), "size of -0.0"),
                         ((float("nan"), 1.0, 1.0), "size of nan"), ((4.0, 1.0, 0.0), "on axis 2"),
                         ((4.0, 1.0, 2.0), "not square"), ((4.0, 1.0), "no slice axis")):
        with pytest.raises(ValueError, match=words):
            z_spacing_from_scale(scale, 0)
