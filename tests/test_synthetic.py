"""The synthetic nuclei/cells generator: images look like fluorescence and labels are trustworthy."""

import numpy as np
import pytest
from scipy import ndimage

from napari_sam.synthetic import (
    SUPPORTED_DTYPES,
    iter_training_pairs,
    make_cells_2d,
    make_nuclei_2d,
    make_nuclei_3d,
)
from napari_sam.synthetic.shapes import _paint_labels, _shape_matrix

# Small 3D stacks keep the test run short; the defaults are exercised once below.
SMALL_3D = (12, 96, 96)

GENERATORS = {
    "nuclei_2d": lambda **kw: make_nuclei_2d(**kw),
    "nuclei_3d": lambda **kw: make_nuclei_3d(SMALL_3D, **kw),
    "cells_2d": lambda **kw: make_cells_2d(**kw),
}


def assert_valid_labels(labels):
    """uint32, ids exactly 1..N, each id one face-connected piece of reasonable size."""
    assert labels.dtype == np.uint32
    ids = np.unique(labels)
    assert ids[0] == 0, "there must be background"
    np.testing.assert_array_equal(ids, np.arange(len(ids)), err_msg="labels are not consecutive")
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        assert box is not None
        _, n_pieces = ndimage.label(labels[box] == label)  # face connectivity, the strictest
        assert n_pieces == 1, f"label {label} is in {n_pieces} pieces"
        assert np.count_nonzero(labels[box] == label) >= 8


def background_far_from_objects(image, labels, margin=5):
    """Pixels at least `margin` pixels away from any object (so blur halos are excluded)."""
    near = ndimage.binary_dilation(labels > 0, iterations=margin)
    return image[~near]


# ---------------------------------------------------------------------------- basics


@pytest.mark.parametrize("kind", GENERATORS)
@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES, ids=lambda d: d.name)
def test_shapes_dtypes_and_labels(kind, dtype):
    image, labels = GENERATORS[kind](seed=1, dtype=dtype)
    assert image.dtype == dtype
    if kind == "cells_2d":
        assert image.shape == labels.shape + (3,)
    else:
        assert image.shape == labels.shape
    assert labels.max() >= 3, "expected several objects"
    assert_valid_labels(labels)


def test_default_shapes():
    image, labels = make_nuclei_2d(seed=0)
    assert image.shape == labels.shape == (256, 256)
    stack, stack_labels = make_nuclei_3d(seed=0)
    assert stack.shape == stack_labels.shape == (32, 256, 256)
    assert_valid_labels(stack_labels)


def test_intensity_ranges_per_dtype():
    u8, labels = make_nuclei_2d(seed=2, dtype=np.uint8)
    u16, _ = make_nuclei_2d(seed=2, dtype=np.uint16)
    f32, _ = make_nuclei_2d(seed=2, dtype=np.float32)
    bg = labels == 0

    # uint8: dim background, bright nuclei, well inside 0..255.
    assert np.median(u8[bg]) < 60
    assert np.percentile(u8[~bg], 90) > 120

    # uint16: a 12-bit camera with a dark offset, more than 8 bits used.
    assert u16.max() > 255
    assert u16.max() <= 4095
    dark, dark_labels = make_nuclei_2d(seed=2, dtype=np.uint16, background=0.0, gradient=0.0)
    assert 80 < np.median(dark[dark_labels == 0]) < 130, "the camera's dark offset (100) is missing"

    # float32: relative intensities in 0..1.
    assert f32.min() >= 0.0 and f32.max() <= 1.0
    assert np.percentile(f32[~bg], 90) > 0.4


@pytest.mark.parametrize("kind", GENERATORS)
def test_every_object_is_visible(kind):
    image, labels = GENERATORS[kind](seed=4, dtype=np.uint16)
    if kind == "cells_2d":
        image = image[..., 1]  # the cytoplasm stain fills the whole cell
    background = background_far_from_objects(image, labels)
    threshold = np.percentile(background, 99)
    means = ndimage.mean(image, labels, index=np.arange(1, labels.max() + 1))
    assert np.all(means > threshold), "an object is not brighter than the background"


def test_cells_have_a_nucleus_inside():
    image, labels = make_cells_2d(seed=6, dtype=np.float32, noise=False)
    nuclear = image[..., 2]
    background = np.percentile(background_far_from_objects(nuclear, labels), 99)
    brightest = ndimage.maximum(nuclear, labels, index=np.arange(1, labels.max() + 1))
    assert np.all(brightest > background + 0.1)
    # The nuclear stain sits inside cells, not outside.
    stained = nuclear > background + 0.1
    assert np.count_nonzero(stained & (labels > 0)) > 0.95 * np.count_nonzero(stained)


def test_texture_and_noise_vary_inside_objects():
    clean, labels = make_nuclei_2d(seed=3, dtype=np.float32, noise=False, texture=0.0, blur_sigma=0.0)
    noisy, _ = make_nuclei_2d(seed=3, dtype=np.float32)
    assert not np.array_equal(clean, noisy)
    first = labels == 1
    assert noisy[first].std() > clean[first].std()


# ------------------------------------------------------------------- reproducibility


@pytest.mark.parametrize("kind", GENERATORS)
def test_same_seed_same_output(kind):
    a_img, a_lab = GENERATORS[kind](seed=11)
    b_img, b_lab = GENERATORS[kind](seed=11)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, c_lab = GENERATORS[kind](seed=12)
    assert not np.array_equal(a_lab, c_lab)


def test_generator_as_seed():
    a = make_nuclei_2d(seed=np.random.default_rng(5))
    b = make_nuclei_2d(seed=np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])


# -------------------------------------------------------------------------- geometry


def test_object_count_and_size_are_configurable():
    _, labels = make_nuclei_2d(n_objects=5, seed=8, radius_range=(8, 10), touching=0.0)
    assert labels.max() == 5
    for box in ndimage.find_objects(labels):
        if any(s.start == 0 or s.stop == n for s, n in zip(box, labels.shape)):
            continue  # cut by the image border
        height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
        assert 2 * 8 - 2 <= min(height, width) and max(height, width) <= 2 * 10 + 2

    _, none = make_nuclei_2d(n_objects=0, seed=8)
    assert none.max() == 0
    _, ranged = make_nuclei_2d(n_objects=(2, 3), seed=8, radius_range=(6, 8))
    assert 1 <= ranged.max() <= 3


def _touching_pairs(labels):
    """Count neighbouring pixel pairs (8-connectivity) that belong to two different objects."""
    h, w = labels.shape
    padded = np.pad(labels, 1)
    count = 0
    for dy, dx in [(0, 1), (1, 0), (1, 1), (1, -1)]:
        shifted = padded[1 + dy : h + 1 + dy, 1 + dx : w + 1 + dx]
        count += np.count_nonzero((labels > 0) & (shifted > 0) & (labels != shifted))
    return count


def test_touching_control():
    for seed in range(3):
        _, apart = make_nuclei_2d(n_objects=20, seed=seed, touching=0.0)
        assert _touching_pairs(apart) == 0
    _, crowded = make_nuclei_2d(n_objects=20, seed=0, touching=1.0)
    assert _touching_pairs(crowded) > 0
    assert_valid_labels(crowded)


@pytest.mark.parametrize("seed", range(6))
def test_crowded_images_keep_labels_valid(seed):
    _, labels = make_nuclei_2d(n_objects=30, seed=seed, touching=1.0, aspect_range=(0.3, 1.0))
    assert_valid_labels(labels)


def test_hidden_objects_are_dropped_and_labels_renumbered():
    big = _shape_matrix([20.0, 20.0], np.eye(2))
    small = _shape_matrix([5.0, 5.0], np.eye(2))
    # The small one shares the big one's centre: relative to its size it is
    # always farther, so it is completely hidden.
    centres = [np.array([30.0, 30.0]), np.array([30.0, 30.0]), np.array([30.0, 80.0])]
    labels, d2, kept = _paint_labels((64, 128), (1.0, 1.0), centres, [big, small, small], min_size=8)
    assert kept == [0, 2]
    np.testing.assert_array_equal(np.unique(labels), [0, 1, 2])
    assert np.all(np.isinf(d2[labels == 0]))
    assert np.all(d2[labels > 0] <= 1.0)


def test_3d_objects_span_several_planes():
    _, labels = make_nuclei_3d(SMALL_3D, seed=2, z_step=2.0)
    spans = [box[0].stop - box[0].start for box in ndimage.find_objects(labels)]
    assert min(spans) >= 3
    # Thicker sampling (smaller z step) makes the same nuclei span more planes.
    _, fine = make_nuclei_3d(SMALL_3D, seed=2, z_step=1.0)
    assert np.median([b[0].stop - b[0].start for b in ndimage.find_objects(fine)]) > np.median(spans)


def test_3d_blur_is_longer_along_z():
    stack, labels = make_nuclei_3d(
        (24, 64, 64), n_objects=1, seed=1, z_step=1.0, dtype=np.float32, noise=False,
        texture=0.0, blur_sigma=2.0, radius_range=(8, 8), aspect_range=(1, 1), gradient=0.0,
    )
    # With z_step=1 and a round nucleus, only the PSF makes z differ from x:
    # the edge profile through the centre is softer along z.
    z, y, x = (int(round(c)) for c in ndimage.center_of_mass(labels > 0))
    along_z = np.abs(np.diff(stack[:, y, x])).max()
    along_x = np.abs(np.diff(stack[z, y, :])).max()
    assert along_z < 0.7 * along_x


def test_tiny_images_do_not_fail():
    image, labels = make_nuclei_2d((4, 5), seed=0)
    assert image.shape == (4, 5)
    if labels.max():
        assert_valid_labels(labels)
    stack, _ = make_nuclei_3d((1, 16, 16), seed=0)
    assert stack.shape == (1, 16, 16)


# -------------------------------------------------------------------- training stream


def test_training_stream():
    pairs = list(iter_training_pairs(seed=3, size=64, count=6, n_objects=(2, 6), radius_range=(4, 10)))
    assert len(pairs) == 6
    for image, labels in pairs:
        assert image.shape == labels.shape == (64, 64)
        assert image.dtype in SUPPORTED_DTYPES
        if labels.max():
            assert_valid_labels(labels)
    again = list(iter_training_pairs(seed=3, size=64, count=6, n_objects=(2, 6), radius_range=(4, 10)))
    for (a, la), (b, lb) in zip(pairs, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)


def test_training_stream_dtypes_and_cells():
    stream = iter_training_pairs(seed=0, size=(48, 64), dtypes=[np.uint16], cells_fraction=1.0)
    for _ in range(2):
        image, labels = next(stream)
        assert image.dtype == np.uint16
        assert image.shape == (48, 64, 3) and labels.shape == (48, 64)


# ---------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: make_nuclei_2d((0, 10)), ValueError),
        (lambda: make_nuclei_2d((-5, 10)), ValueError),
        (lambda: make_nuclei_2d((10, 10, 10)), ValueError),
        (lambda: make_nuclei_3d((10, 10)), ValueError),
        (lambda: make_cells_2d((10,)), ValueError),
        (lambda: make_nuclei_2d((10.5, 10)), TypeError),
        (lambda: make_nuclei_2d(256), TypeError),
        (lambda: make_nuclei_2d(dtype=np.int32), ValueError),
        (lambda: make_nuclei_2d(dtype=np.float64), ValueError),
        (lambda: make_nuclei_3d(SMALL_3D, dtype="not-a-dtype"), TypeError),
        (lambda: make_nuclei_2d(n_objects=-1), ValueError),
        (lambda: make_nuclei_2d(n_objects=(5, 2)), ValueError),
        (lambda: make_nuclei_2d(n_objects=(-1, 2)), ValueError),
        (lambda: make_nuclei_2d(n_objects=(1, 2, 3)), ValueError),
        (lambda: make_nuclei_2d(n_objects=2.5), TypeError),
        (lambda: make_nuclei_2d(radius_range=(0, 5)), ValueError),
        (lambda: make_nuclei_2d(radius_range=(10, 5)), ValueError),
        (lambda: make_nuclei_2d(aspect_range=(0.5, 1.5)), ValueError),
        (lambda: make_nuclei_2d(touching=1.5), ValueError),
        (lambda: make_nuclei_2d(photons=0), ValueError),
        (lambda: make_nuclei_2d(blur_sigma=-1), ValueError),
        (lambda: make_nuclei_3d(SMALL_3D, z_step=0), ValueError),
        (lambda: make_nuclei_2d(seed="abc"), TypeError),
        (lambda: iter_training_pairs(size=0), ValueError),
        (lambda: iter_training_pairs(dtypes=[]), ValueError),
        (lambda: iter_training_pairs(dtypes=[np.int16]), ValueError),
        (lambda: iter_training_pairs(count=-1), ValueError),
    ],
)
def test_bad_arguments_raise(call, error):
    with pytest.raises(error):
        call()


def test_error_messages_name_the_problem():
    with pytest.raises(ValueError, match="positive"):
        make_nuclei_2d((0, 10))
    with pytest.raises(ValueError, match="uint8"):
        make_nuclei_2d(dtype=np.int32)
    with pytest.raises(ValueError, match="negative"):
        make_nuclei_2d(n_objects=-3)
    with pytest.raises(ValueError, match="3 entries"):
        make_nuclei_3d((10, 10))


def test_generator_needs_no_gui_or_torch():
    """Data-loader workers and headless CI import the generator without napari, Qt or torch."""
    import subprocess
    import sys

    code = (
        "import sys, napari_sam.synthetic\n"
        "heavy = [m for m in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
