import numpy as np
import pytest

from napari_sam.model.image import stack_intensity_range
from napari_sam.tiles import check_plane_array, plane_intensity_range, read_window, segment_tiled
from napari_sam.tiles import reading
from tile_helpers import OracleSegmenter, ReadingSpy, large_truth, same_objects


def test_the_plane_contrast_is_the_one_image_rule_read_band_by_band(monkeypatch):
    rng = np.random.default_rng(0)
    plane = rng.gamma(2.0, 300.0, (500, 700)).astype(np.uint16)
    monkeypatch.setattr(reading, "BAND_PIXELS", 700 * 64)
    spy = ReadingSpy(plane)
    assert plane_intensity_range(spy) == stack_intensity_range(plane)
    assert len(spy.reads) == 8  # bands of 64 rows, never the whole
    assert plane_intensity_range(plane.astype(np.uint8)) is None


def test_a_large_plane_is_sampled_not_read_into_one_array(monkeypatch):
    monkeypatch.setattr(reading, "RANGE_SAMPLE", 1000)
    plane = np.arange(400 * 400, dtype=np.float32).reshape(400, 400)
    lo, hi = plane_intensity_range(plane)
    full_lo, full_hi = stack_intensity_range(plane)
    span = full_hi - full_lo
    assert abs(lo - full_lo) < 0.03 * span and abs(hi - full_hi) < 0.03 * span


def test_memmap_and_dask_arrays_are_read_by_windows(tmp_path):
    import dask.array as da

    truth = large_truth((400, 500), n=(250, 250))
    path = tmp_path / "plane.raw"
    mm = np.memmap(path, dtype=truth.dtype, mode="w+", shape=truth.shape)
    mm[:] = truth
    mm.flush()
    before = path.read_bytes()
    image = np.memmap(path, dtype=truth.dtype, mode="r", shape=truth.shape)
    assert same_objects(truth, segment_tiled(image, OracleSegmenter(), tile=128, halo=32).labels)
    assert path.read_bytes() == before  # the input is never written to
    lazy = da.from_array(truth, chunks=(100, 100))
    assert same_objects(truth, segment_tiled(lazy, OracleSegmenter(), tile=128, halo=32).labels)
    window = read_window(lazy, (10, 20, 30, 45))
    assert isinstance(window, np.ndarray) and np.array_equal(window, truth[10:20, 30:45])


@pytest.mark.parametrize("array, error, message", [
    ("not an image", TypeError, "expected an array"), (np.zeros((4, 5, 6)), ValueError, "one plane at a time"),
    (np.zeros((5, 5), dtype="U3"), TypeError, "dtype")])
def test_arrays_that_are_no_plane_are_refused(array, error, message):
    with pytest.raises(error, match=message):
        check_plane_array(array)


def test_an_rgb_plane_is_tiled_on_its_rows_and_columns():
    truth = large_truth((300, 400), n=(150, 150))
    rgb = np.stack([truth] * 3, axis=-1)

    class RgbOracle(OracleSegmenter):
        def generate(self, plane, **kwargs):
            return super().generate(plane[..., 0], **kwargs)

    assert same_objects(truth, segment_tiled(rgb, RgbOracle(), tile=128, halo=32).labels)


def test_a_zarr_backed_image_opens_in_a_napari_layer_without_being_read_whole():
    # napari shows big planes through dask/zarr-backed (or multiscale) layers; it reads what it draws.
    zarr = pytest.importorskip("zarr")
    layers = pytest.importorskip("napari.layers")
    image = zarr.create_array(store=zarr.storage.MemoryStore(), shape=(4096, 4096), chunks=(512, 512), dtype="uint16")
    image[:512, :512] = 7
    layer = layers.Image(image, contrast_limits=(0, 4095))
    assert layer.data is image and layer.data.shape == (4096, 4096)
    pyramid = layers.Image([image, image[::4, ::4]], multiscale=True, contrast_limits=(0, 4095))
    assert pyramid.multiscale and pyramid.level_shapes[0].tolist() == [4096, 4096]
