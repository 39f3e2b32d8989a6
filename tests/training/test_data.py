import numpy as np
import pytest
import tifffile

from napari_sam.training.data import (
    check_labels,
    FolderSource,
    GeneratedSource,
    draw_prepared,
    nearest_resize,
    open_source,
    prepare_pair,
)
from napari_sam.model.image import resize_longest_side, to_uint8_rgb


def test_nearest_resize_never_invents_ids():
    labels = np.zeros((50, 70), np.int32)
    labels[5:20, 5:30] = 3
    labels[25:45, 40:65] = 7
    for shape in [(128, 128), (17, 23), (50, 70)]:
        out = nearest_resize(labels, shape)
        assert out.shape == shape
        assert set(np.unique(out)) == {0, 3, 7}
    assert np.array_equal(nearest_resize(labels, labels.shape), labels)


def test_pair_follows_the_predictors_image_rule():
    rng = np.random.default_rng(0)
    image = rng.integers(100, 4000, (100, 200)).astype(np.uint16)
    labels = np.zeros((100, 200), np.uint32)
    labels[40:60, 90:130] = 2
    pair = prepare_pair(image, labels, image_size=128, low_res_size=32)
    expected = resize_longest_side(to_uint8_rgb(image).rgb, 128)
    assert np.array_equal(pair.pixels, expected)  # the same pixels the predictor embeds
    assert pair.labels.shape == (128, 128) and pair.low_res_labels.shape == (32, 32)
    assert pair.labels[64:].max() == 0  # padding below the 64-row image is background
    ys, xs = np.nonzero(pair.labels == 2)
    assert ys.min() == pytest.approx(40 * 0.64, abs=1.5) and xs.max() == pytest.approx(130 * 0.64, abs=1.5)
    assert pair.object_ids().tolist() == [2]


def test_label_shape_must_match_the_image():
    with pytest.raises(ValueError, match="height and width"):
        prepare_pair(np.zeros((64, 64), np.uint8), np.zeros((64, 60), np.int32), 64, 16)


def test_float_labels_are_refused():
    with pytest.raises(TypeError, match="integer"):
        prepare_pair(np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.float32), 64, 16)


def test_generated_draws_are_fixed_by_seed_step_and_slot():
    source = GeneratedSource(size=64)
    a = draw_prepared(source, 1, 5, 0, 64, 16)
    b = draw_prepared(source, 1, 5, 0, 64, 16)
    c = draw_prepared(source, 1, 5, 1, 64, 16)
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.pixels, c.pixels)
    assert len(a.object_ids()) > 0


def _write_pair(root, name, image, labels):
    (root / "images").mkdir(exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    tifffile.imwrite(root / "images" / f"{name}.tif", image)
    tifffile.imwrite(root / "labels" / f"{name}.tif", labels)


def _nuclei_labels(shape, seed=0):
    labels = np.zeros(shape, np.uint16)
    labels[10:30, 10:30] = 1
    labels[35:55, 20:50] = 2
    return labels


def test_folder_pairs_are_matched_by_name(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (64, 64)).astype(np.uint8)
    _write_pair(tmp_path, "a", image, _nuclei_labels((64, 64)))
    _write_pair(tmp_path, "b", image, _nuclei_labels((64, 64)))
    tifffile.imwrite(tmp_path / "images" / "unlabelled.tif", image)  # no labels: ignored
    source = open_source(str(tmp_path))
    assert isinstance(source, FolderSource) and len(source.entries) == 2
    img, lab = source.draw(np.random.default_rng(0))
    assert img.shape == (64, 64) and set(np.unique(lab)) == {0, 1, 2}


def test_folder_stacks_are_used_plane_by_plane(tmp_path):
    stack = np.zeros((3, 64, 64), np.uint8)
    labels = np.zeros((3, 64, 64), np.uint16)
    labels[0] = _nuclei_labels((64, 64))
    labels[2] = _nuclei_labels((64, 64))
    _write_pair(tmp_path, "s", stack, labels)
    source = FolderSource(tmp_path)  # the empty middle plane is simply not used
    assert [e.plane for e in source.entries] == [0, 2]


def test_folder_without_pairs_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="images/ and labels/"):
        FolderSource(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "images" / "x.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "labels" / "y.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="no image/label pairs"):
        FolderSource(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        FolderSource(tmp_path / "missing")


def test_empty_label_images_are_skipped_with_a_warning(tmp_path):
    image = np.zeros((64, 64), np.uint8)
    _write_pair(tmp_path, "empty", image, np.zeros((64, 64), np.uint16))
    _write_pair(tmp_path, "full", image, _nuclei_labels((64, 64)))
    with pytest.warns(UserWarning, match="empty.tif has no objects"):
        source = FolderSource(tmp_path)
    assert [e.image.name for e in source.entries] == ["full.tif"]


def test_all_empty_label_images_are_an_error(tmp_path):
    _write_pair(tmp_path, "empty", np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint16))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="empty"):
        FolderSource(tmp_path)


def test_folder_label_shape_mismatch_names_the_file(tmp_path):
    _write_pair(tmp_path, "bad", np.zeros((64, 64), np.uint8), _nuclei_labels((64, 60)))
    with pytest.raises(ValueError, match="bad.tif"):
        FolderSource(tmp_path)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
def test_label_ids_beyond_int32_are_renumbered_without_merging(dtype):
    # 2**32 + 1 used to wrap to 1 and 2**31 to a negative id: objects merged silently.
    labels = np.zeros((64, 64), dtype)
    labels[2:12, 2:12] = 1
    labels[20:30, 20:30] = 2**32 + 1
    labels[40:50, 40:50] = 2**31
    labels[50:60, 5:15] = 7
    out = check_labels(labels, (64, 64))
    assert out.dtype == np.int32
    assert out.min() == 0 and (out == 0).sum() == (labels == 0).sum()
    # one new id per old id, the same pixels for each: nothing merged, nothing split
    for old in (1, 7, 2**31, 2**32 + 1):
        new = np.unique(out[labels == old])
        assert new.size == 1 and new[0] > 0
        assert np.array_equal(out == new[0], labels == old)
    assert np.unique(out).size == 5


def test_small_label_ids_are_kept_as_they_are():
    labels = np.zeros((32, 32), np.int64)
    labels[4:9, 4:9] = 12
    labels[20:25, 20:25] = 3
    assert np.array_equal(check_labels(labels, (32, 32)), labels.astype(np.int32))


def _small_against_brighter(source, n, size=256):
    """Over n draws: the share of nuclei under 200 px that touch (within one pixel) a brighter nucleus, and
    the median nucleus area."""
    from scipy import ndimage

    hits, areas = [], []
    for k in range(n):
        image, labels = source.draw(np.random.default_rng([3, k]))
        assert labels.shape == (size, size)
        labels, image = labels.astype(np.int64), image.astype(np.float64)
        count = int(labels.max()) + 1
        area = np.bincount(labels.ravel(), minlength=count)
        mean = np.bincount(labels.ravel(), weights=image.ravel(), minlength=count) / np.maximum(area, 1)
        for obj in np.flatnonzero(area[1:]) + 1:
            mask = labels == obj
            ring = ndimage.binary_dilation(mask) & ~mask
            near = set(np.unique(labels[ring])) - {0, obj}
            hits.append(area[obj] < 200 and any(mean[o] > mean[obj] for o in near))
            areas.append(area[obj])
    return float(np.mean(hits)), float(np.median(areas))


def test_crowded_samples_press_small_nuclei_against_brighter_ones():
    plain_share, plain_area = _small_against_brighter(GeneratedSource(), 10)
    crowded_share, crowded_area = _small_against_brighter(GeneratedSource(crowded=1.0), 10)
    assert crowded_share > 2 * plain_share + 0.1  # the case the demo model got wrong, far more often
    assert crowded_area < 0.75 * plain_area  # and smaller
    assert "100 % crowded" in GeneratedSource(crowded=1.0).description


def test_crowded_share_is_drawn_per_sample():
    """With share 0.5 a sample is crowded exactly when its first number falls below 0.5: then it is the
    sample an always-crowded source draws from the same numbers."""
    half, always = GeneratedSource(size=64, crowded=0.5), GeneratedSource(size=64, crowded=1.0)
    crowded = []
    for k in range(30):
        coin = np.random.default_rng([9, k]).random()
        same = np.array_equal(half.draw(np.random.default_rng([9, k]))[1], always.draw(np.random.default_rng([9, k]))[1])
        assert same == (coin < 0.5)
        crowded.append(same)
    assert 5 < sum(crowded) < 25


def test_without_crowding_the_generated_stream_is_unchanged():
    """crowded=0 draws no extra number: a 2D sample is the training pairs' stream right after the 3D coin."""
    from napari_sam.synthetic import iter_training_pairs

    checked = 0
    for k in range(12):
        rng = np.random.default_rng([5, k])
        coin = np.random.default_rng([5, k]).random()
        image, labels = GeneratedSource(size=64, crowded=0.0).draw(rng)
        if coin < GeneratedSource().fraction_3d:
            continue
        expected_rng = np.random.default_rng([5, k])
        expected_rng.random()
        exp_image, exp_labels = next(iter_training_pairs(seed=expected_rng, size=64, count=1))
        assert np.array_equal(image, exp_image) and np.array_equal(labels, exp_labels)
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize("share", [-0.1, 1.5, True, "half"])
def test_crowded_must_be_a_share(share):
    with pytest.raises(ValueError, match="--crowded"):
        GeneratedSource(crowded=share)


def test_open_source_passes_the_crowded_share():
    assert open_source("generated", crowded=0.3).crowded == 0.3
    assert open_source("generated").crowded == 0.0
