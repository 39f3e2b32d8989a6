"""The image rule: any accepted image -> (H, W, 3) uint8 plus a rule string; resizing as SAM does."""

import warnings

import numpy as np
import pytest
import torch

from napari_sam.model.image import check_image, resize_longest_side, resized_shape, stack_intensity_range, to_uint8_rgb


def ramp(h=40, w=50, lo=0.0, hi=1.0):
    """A smooth gradient: every intensity between lo and hi appears."""
    return np.linspace(lo, hi, h * w).reshape(h, w)


NUMERIC_DTYPES = [
    np.uint8,
    np.uint16,
    np.uint32,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
    np.bool_,
]


@pytest.mark.parametrize("dtype", NUMERIC_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dtype_becomes_uint8_rgb(dtype):
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if dtype is np.bool_:
        image = ramp() > 0.5
    elif info is not None:
        image = ramp(lo=max(info.min, -100), hi=min(info.max, 200)).astype(dtype)
    else:
        image = ramp(lo=-3.0, hi=5.0).astype(dtype)
    prepared = to_uint8_rgb(image)
    assert prepared.rgb.shape == (40, 50, 3)
    assert prepared.rgb.dtype == np.uint8
    assert isinstance(prepared.rule, str) and prepared.rule
    if dtype is np.uint8:
        np.testing.assert_array_equal(prepared.rgb[..., 0], image)  # used as it is
    else:
        # A ramp is stretched over the whole 0-255 range whatever the dtype.
        assert prepared.rgb.min() == 0 and prepared.rgb.max() == 255
    # Brighter input stays brighter: the mapping is monotonic.
    flat = prepared.rgb[..., 0].reshape(-1).astype(int)
    assert np.all(np.diff(flat) >= 0)


def test_uint8_is_used_unchanged():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(30, 20, 3), dtype=np.uint8)
    prepared = to_uint8_rgb(image)
    np.testing.assert_array_equal(prepared.rgb, image)
    assert "uint8" in prepared.rule
    # A dim uint8 image is NOT stretched: uint8 means "already 8-bit display values".
    dim = (image // 8).astype(np.uint8)
    np.testing.assert_array_equal(to_uint8_rgb(dim).rgb, dim)


def test_bool_is_0_and_255():
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:4] = True
    prepared = to_uint8_rgb(mask)
    assert set(np.unique(prepared.rgb)) == {0, 255}
    np.testing.assert_array_equal(prepared.rgb[..., 1] == 255, mask)


def test_uint16_is_stretched_between_percentiles():
    # A dim 12-bit camera image occupying 100..1100 of the uint16 range.
    image = (100 + 1000 * ramp()).astype(np.uint16)
    rgb = to_uint8_rgb(image).rgb[..., 0]
    # Dividing by 256 would give a nearly black image; the rule spreads it out.
    assert rgb.min() == 0 and rgb.max() == 255
    assert 100 < rgb.mean() < 155


def test_a_few_hot_pixels_do_not_wash_out_the_image():
    image = (100 + 1000 * ramp(100, 100)).astype(np.uint16)
    hot = image.copy()
    hot.flat[[5, 500, 5000]] = 65535  # 0.03 % of the pixels: a cosmic ray, a dead-pixel map ...
    plain, with_hot = to_uint8_rgb(image).rgb, to_uint8_rgb(hot).rgb
    # With min/max scaling everything but the hot pixels would be below ~5.
    assert with_hot.mean() > 100
    keep = np.ones(image.size, bool)
    keep[[5, 500, 5000]] = False
    diff = np.abs(with_hot[..., 0].reshape(-1)[keep].astype(int) - plain[..., 0].reshape(-1)[keep].astype(int))
    assert diff.max() <= 3
    assert (with_hot[..., 0].reshape(-1)[~keep] == 255).all()  # hot pixels saturate


def test_outliers_beyond_percentiles_are_clipped_not_wrapped():
    image = ramp(100, 100, 0.0, 1.0)
    image[0, 0], image[0, 1] = -1e6, 1e6
    rgb = to_uint8_rgb(image).rgb[..., 0]
    assert rgb[0, 0] == 0 and rgb[0, 1] == 255


def test_given_intensity_range_is_used():
    image = np.array([[0, 100], [200, 400]], np.uint16)
    prepared = to_uint8_rgb(image, intensity_range=(100, 200))
    np.testing.assert_array_equal(prepared.rgb[..., 0], [[0, 0], [255, 255]])
    assert "given" in prepared.rule
    # Midpoint maps to the middle.
    mid = to_uint8_rgb(np.array([[0, 150], [0, 0]], np.float32), intensity_range=(100, 200)).rgb
    assert mid[0, 1, 0] in (127, 128)


def test_given_intensity_range_also_applies_to_uint8():
    image = np.array([[10, 20], [30, 40]], np.uint8)
    prepared = to_uint8_rgb(image, intensity_range=(10, 40))
    np.testing.assert_array_equal(prepared.rgb[..., 0], [[0, 85], [170, 255]])
    assert prepared.rule != to_uint8_rgb(image).rule


def test_one_range_treats_slices_alike():
    # Two slices of a stack, one twice as bright: with a shared range they stay different.
    a = (1000 * ramp()).astype(np.uint16)
    b = a * 2
    shared = (0, 2000)
    assert to_uint8_rgb(b, shared).rgb.mean() > 1.5 * to_uint8_rgb(a, shared).rgb.mean()
    # With per-image percentiles they look the same.
    np.testing.assert_allclose(to_uint8_rgb(a).rgb.mean(), to_uint8_rgb(b).rgb.mean(), atol=1)


@pytest.mark.parametrize(
    "bad, word",
    [
        ((5, 5), "low < high"),
        ((10, 2), "low < high"),
        ((0, np.nan), "finite"),
        ((0, np.inf), "finite"),
        ((1, 2, 3), "two numbers"),
        (5, "two numbers"),
        (("a", "b"), "two numbers"),
    ],
)
def test_bad_intensity_range_is_refused(bad, word):
    with pytest.raises(ValueError, match=word):
        to_uint8_rgb(ramp(), intensity_range=bad)


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_constant_image_becomes_zeros(dtype):
    prepared = to_uint8_rgb(np.full((8, 9), 7, dtype))
    assert prepared.rgb.shape == (8, 9, 3)
    assert not prepared.rgb.any()
    assert "constant" in prepared.rule


@pytest.mark.parametrize(
    "value, dtype",
    [(2**64 - 1, np.uint64), (2**63 - 1, np.int64), (1e17, np.float64), (-1e300, np.float64), (1e308, np.float64),
     (3e38, np.float32)],
)
def test_constant_images_of_huge_values_become_zeros_without_warnings(value, dtype):
    # lo + 1 == lo from about 1e16 on: the range of a constant image used to be empty (ZeroDivisionError).
    image = np.full((64, 64), value, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = to_uint8_rgb(image)
        stack_range = stack_intensity_range(image[None])
        again = to_uint8_rgb(image, stack_range)  # a stack's range is given back for each slice
    assert not prepared.rgb.any() and "constant" in prepared.rule
    assert not again.rgb.any()


def test_values_near_the_float64_limits_are_scaled_without_warnings():
    # Percentile interpolation and hi - lo overflowed: numpy warnings, and a black image.
    image = ramp(40, 50, -1.0, 1.0) * 1e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = to_uint8_rgb(image)
        given = to_uint8_rgb(image, (-1e308, 1e308))
    for out in (prepared.rgb[..., 0], given.rgb[..., 0]):
        flat = out.reshape(-1).astype(int)
        assert flat.min() == 0 and flat.max() == 255 and np.all(np.diff(flat) >= 0)
    expected = np.rint(255 * (ramp(40, 50, -1.0, 1.0) + 1) / 2)  # the same ramp at ordinary values
    assert np.abs(given.rgb[..., 0] - expected).max() <= 1


def test_huge_outliers_beside_ordinary_values_are_clipped_without_warnings():
    image = ramp(20, 20, 0.0, 1000.0)
    image[0, 0], image[0, 1] = 1e300, -1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_uint8_rgb(image).rgb[..., 0]
    assert out[0, 0] == 255 and out[0, 1] == 0
    assert out.reshape(-1)[2:].max() == 255


def test_nearly_constant_image_falls_back_to_min_max():
    # 99.9 % background: the percentiles coincide, but the one bright spot must still show.
    image = np.zeros((40, 40), np.uint16)
    image[3, 4] = 500
    prepared = to_uint8_rgb(image)
    assert prepared.rgb[3, 4, 0] == 255 and prepared.rgb.sum() == 3 * 255
    assert "minmax" in prepared.rule


def test_partly_nan_image():
    image = ramp(20, 20, 10.0, 20.0)
    image[5:8, 5:8] = np.nan
    prepared = to_uint8_rgb(image)
    # NaN goes to the bottom of the range; the rest is scaled as if the NaNs were not there.
    assert (prepared.rgb[5:8, 5:8] == 0).all()
    finite = np.isfinite(image)
    assert prepared.rgb[..., 0][finite].max() == 255
    # The range recorded in the rule is that of the finite pixels alone.
    lo, hi = np.percentile(image[finite], (0.5, 99.5))
    assert prepared.rule.endswith(f":{float(lo)!r}:{float(hi)!r}")


def test_all_nan_image_becomes_zeros():
    prepared = to_uint8_rgb(np.full((6, 6), np.nan, np.float32))
    assert prepared.rgb.shape == (6, 6, 3) and not prepared.rgb.any()
    assert "no-finite" in prepared.rule


def test_infinities_are_clipped():
    image = ramp(20, 20, 0.0, 1.0)
    image[0, 0], image[0, 1] = np.inf, -np.inf
    prepared = to_uint8_rgb(image)
    assert prepared.rgb[0, 0, 0] == 255 and prepared.rgb[0, 1, 0] == 0
    # The infinities did not spoil the range of the finite pixels.
    assert prepared.rgb[..., 0].reshape(-1)[2:].max() == 255
    assert "inf" not in prepared.rule and "nan" not in prepared.rule


def test_rgba_drops_alpha():
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, size=(10, 12, 4), dtype=np.uint8)
    other_alpha = rgba.copy()
    other_alpha[..., 3] = 255 - other_alpha[..., 3]
    np.testing.assert_array_equal(to_uint8_rgb(rgba).rgb, rgba[..., :3])
    np.testing.assert_array_equal(to_uint8_rgb(other_alpha).rgb, rgba[..., :3])


def test_rgb_float_channels_share_one_range():
    # Colour balance survives: the red channel is brighter than the green one after scaling too.
    rgb = np.stack([ramp() * 2, ramp(), ramp() * 0.5], axis=-1)
    out = to_uint8_rgb(rgb).rgb
    assert out[..., 0].mean() > out[..., 1].mean() > out[..., 2].mean()


def test_grayscale_is_repeated_into_three_channels():
    gray = (1000 * ramp()).astype(np.uint16)
    out = to_uint8_rgb(gray).rgb
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_single_channel_axis_is_grayscale():
    gray = (1000 * ramp()).astype(np.uint16)
    a, b = to_uint8_rgb(gray), to_uint8_rgb(gray[..., None])
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert a.rule == b.rule
    u8 = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    np.testing.assert_array_equal(to_uint8_rgb(u8).rgb, np.repeat(u8, 3, axis=2))


def test_torch_tensors_are_accepted():
    image = torch.linspace(0, 1, 64).reshape(8, 8)
    np.testing.assert_array_equal(to_uint8_rgb(image).rgb, to_uint8_rgb(image.numpy()).rgb)
    assert to_uint8_rgb(image.bfloat16()).rgb.shape == (8, 8, 3)


def test_caller_array_is_not_modified():
    image = ramp(10, 10, 0.0, 1.0)
    image[0, 0] = np.nan
    before = image.copy()
    to_uint8_rgb(image)
    np.testing.assert_array_equal(image, before)


def test_rule_string_identifies_the_rule_and_the_range():
    image = (1000 * ramp()).astype(np.uint16)
    rules = {
        to_uint8_rgb(image.astype(np.uint8)).rule,
        to_uint8_rgb(image > 500).rule,
        to_uint8_rgb(image).rule,
        to_uint8_rgb(image * 2).rule,  # other percentiles
        to_uint8_rgb(image, (0, 1000)).rule,
        to_uint8_rgb(image, (0, 2000)).rule,
        to_uint8_rgb(np.full((4, 4), 3.0)).rule,
        to_uint8_rgb(np.full((4, 4), np.nan)).rule,
    }
    assert len(rules) == 8
    # The same image gives the same rule every time (it is a cache key).
    assert to_uint8_rgb(image).rule == to_uint8_rgb(image.copy()).rule
    # A range equal to the percentiles is still recorded as "given": a different rule.
    percentile = to_uint8_rgb(image)
    lo, hi = np.percentile(image, (0.5, 99.5))
    assert to_uint8_rgb(image, (lo, hi)).rule != percentile.rule


# ------------------------------------------------------------------ bad images
@pytest.mark.parametrize(
    "image, error, word",
    [
        (None, TypeError, "no image"),
        (np.zeros((0, 5)), ValueError, "empty"),
        (np.zeros((0, 0, 3), np.uint8), ValueError, "empty"),
        (np.zeros((1, 5)), ValueError, "too small"),
        (np.zeros((5, 1, 3), np.uint8), ValueError, "too small"),
        (np.zeros(5), ValueError, "dimension"),
        (np.zeros((2, 3, 4, 5)), ValueError, "dimension"),
        (np.zeros((4, 4, 5)), ValueError, "channels"),
        (np.zeros((4, 4, 2)), ValueError, "channels"),
        (np.zeros((4, 4), complex), TypeError, "complex"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "dtype"),
        (np.zeros((3, 3), object), TypeError, "dtype"),
        (np.zeros((3, 3), "datetime64[s]"), TypeError, "dtype"),
        ([[1, 2], [3]], TypeError, "array"),
        (np.float32(3.0), ValueError, "dimension"),
    ],
    ids=[
        "none",
        "empty",
        "empty-rgb",
        "one-row",
        "one-column",
        "1d",
        "4d",
        "5-channels",
        "2-channels",
        "complex",
        "strings",
        "objects",
        "datetimes",
        "ragged",
        "scalar",
    ],
)
def test_bad_images_are_refused_with_a_message(image, error, word):
    with pytest.raises(error, match=word):
        check_image(image)
    with pytest.raises(error, match=word):
        to_uint8_rgb(image)


def test_smallest_accepted_image():
    assert to_uint8_rgb(np.array([[0, 1], [2, 3]], np.uint8)).rgb.shape == (2, 2, 3)


# -------------------------------------------------------------------- resizing
@pytest.mark.parametrize(
    "hw, side, expected",
    [
        ((600, 800), 1024, (768, 1024)),
        ((800, 600), 1024, (1024, 768)),
        ((1024, 1024), 1024, (1024, 1024)),
        ((2048, 512), 1024, (1024, 256)),
        ((100, 3), 1024, (1024, 31)),  # 30.72 -> 31: rounded half up, not truncated
        ((3, 1000), 1024, (3, 1024)),  # 3.072 -> 3
        ((60, 80), 128, (96, 128)),
        ((333, 1000), 1024, (341, 1024)),  # 340.99 -> 341
        ((2, 5000), 1024, (1, 1024)),  # 0.41 would round to 0 rows: kept at 1
        ((5000, 2), 1024, (1024, 1)),
    ],
)
def test_resized_shape_rounds_as_sam(hw, side, expected):
    assert resized_shape(*hw, side) == expected


def test_resized_shape_matches_the_reference():
    import reference

    reference.segment_anything()
    from segment_anything.utils.transforms import ResizeLongestSide as transform
    rng = np.random.default_rng(2)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(2, 3000, size=2))
        assert resized_shape(h, w, 1024) == transform.get_preprocess_shape(h, w, 1024)


@pytest.mark.parametrize("hw", [(60, 80), (300, 100), (128, 128), (20, 20)])
def test_resize_longest_side_keeps_uint8_and_sets_size(hw):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    out = resize_longest_side(rgb, 128)
    assert out.dtype == np.uint8
    assert out.shape == (*resized_shape(*hw, 128), 3)
    assert max(out.shape[:2]) == 128


@pytest.mark.parametrize("hw", [(2, 5000), (4000, 2), (2, 2049)])
def test_thin_strips_are_resized_to_at_least_one_pixel(hw):
    rgb = np.random.default_rng(4).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    out = resize_longest_side(rgb, 1024)
    assert out.shape == (*resized_shape(*hw, 1024), 3) and min(out.shape[:2]) == 1


def test_resize_keeps_a_flat_colour():
    rgb = np.empty((30, 40, 3), np.uint8)
    rgb[:] = (10, 120, 250)
    out = resize_longest_side(rgb, 128)
    assert (out == (10, 120, 250)).all()
