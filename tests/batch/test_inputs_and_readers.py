"""Finding inputs and opening them lazily, and the clear refusals of damaged ones (no model needed)."""

import numpy as np
import pytest
import tifffile
from batch_helpers import nuclei, nuclei_stack, write_ome_zarr

from napari_sam.batch.inputs import Input, find_inputs
from napari_sam.batch.readers import open_input


def test_folders_are_searched_recursively_and_keep_their_subfolders_in_the_names(tmp_path):
    (tmp_path / "day1").mkdir()
    tifffile.imwrite(tmp_path / "a.tif", nuclei())
    tifffile.imwrite(tmp_path / "day1" / "b.ome.tiff", nuclei())
    np.save(tmp_path / "day1" / "c.npy", nuclei_stack())
    write_ome_zarr(tmp_path / "day1" / "d.ome.zarr", nuclei_stack())
    (tmp_path / "notes.txt").write_text("not an image")
    found = find_inputs([tmp_path])
    assert [(i.name, i.kind) for i in found] == [
        ("a", "tiff"), ("day1/b", "tiff"), ("day1/c", "npy"), ("day1/d", "ome-zarr")]
    # The OME-Zarr is one input: its chunk folders are not searched for images.
    assert [(i.name, i.kind) for i in find_inputs([tmp_path / "day1" / "d.ome.zarr"])] == [("d", "ome-zarr")]
    assert [i.name for i in find_inputs([str(tmp_path / "**" / "*.tif*")])] == ["a", "day1/b"]


def test_arguments_that_find_nothing_or_clash_are_refused(tmp_path):
    with pytest.raises(ValueError, match="matches no file"):
        find_inputs([str(tmp_path / "*.tif")])
    with pytest.raises(ValueError, match="does not exist"):
        find_inputs([tmp_path / "missing.tif"])
    with pytest.raises(ValueError, match="holds no TIFF"):
        find_inputs([tmp_path])
    (tmp_path / "x").mkdir()
    tifffile.imwrite(tmp_path / "a.tif", nuclei())
    np.save(tmp_path / "x" / "a.npy", nuclei())
    with pytest.raises(ValueError, match="would both write OUT/a"):
        find_inputs([tmp_path / "a.tif", tmp_path / "x" / "a.npy"])
    assert len(find_inputs([tmp_path / "a.tif", str(tmp_path / "*.tif")])) == 1  # named twice, done once


def test_a_tiff_is_read_lazily_with_its_voxel_size(tmp_path):
    stack = nuclei_stack(shape=(4, 64, 64))
    tifffile.imwrite(tmp_path / "s.tif", stack, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    opened = open_input(Input(tmp_path / "s.tif", "s", "tiff"))
    try:
        assert not isinstance(opened.data, np.ndarray) and opened.axes == "zyx"
        assert np.array_equal(opened.data[2], stack[2])
        assert opened.voxel_size == pytest.approx((2.0, 0.25, 0.25))
    finally:
        opened.close()


def test_a_truncated_tiff_is_refused_with_the_reason(tmp_path):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, nuclei_stack(shape=(4, 64, 64)).astype(np.uint16), photometric="minisblack")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ValueError, match="truncated.*copy or save it again"):
        open_input(Input(path, "cut", "tiff"))


def test_a_line_of_one_by_100000_pixels_is_refused_before_segmenting(tmp_path):
    np.save(tmp_path / "line.npy", np.arange(100_000, dtype=np.uint16)[None])
    with pytest.raises(ValueError, match="planes of 1 x 100000 pixels: SAM needs at least 2 pixels"):
        open_input(Input(tmp_path / "line.npy", "line", "npy"))


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_level_0_is_read_with_its_axes_scale_and_one_channel(tmp_path, version):
    data = np.stack([nuclei_stack(seed=s) for s in (1, 2)], axis=0)[None]  # t, c, z, y, x
    path = write_ome_zarr(tmp_path / "img.zarr", data, axes="tczyx", scale=[1, 1, 3.0, 0.5, 0.5], version=version)
    item = find_inputs([path])[0]
    with pytest.raises(ValueError, match="2 channels .*--channel N"):
        open_input(item)
    opened = open_input(item, channel=1)
    assert opened.axes == "zyx" and opened.data.shape == data.shape[2:]
    assert opened.voxel_size == (3.0, 0.5, 0.5) and opened.ome["version"] == version
    assert opened.ome["units"] == ["micrometer"] * 3
    assert np.array_equal(opened.data[1], data[0, 1, 1]) and np.array_equal(np.asarray(opened.data), data[0, 1])


def test_an_ome_zarr_with_missing_chunk_files_is_refused_unless_allowed(tmp_path):
    path = write_ome_zarr(tmp_path / "img.zarr", nuclei_stack(), axes="zyx")
    (path / "0" / "1" / "1" / "0").unlink()  # chunk z=1, y=1, x=0 of the v2 "/" layout
    item = find_inputs([path])[0]
    with pytest.raises(ValueError, match="1 of its 8 chunk files missing.*--allow-missing-chunks"):
        open_input(item)
    opened = open_input(item, allow_missing_chunks=True)
    assert not np.asarray(opened.data)[1, 32:, :32].any()  # what zarr would have given silently


def test_a_bigtiff_plane_and_an_rgb_tiff_are_read_lazily(tmp_path):
    plane = nuclei(shape=(96, 128))
    tifffile.imwrite(tmp_path / "big.tif", plane, bigtiff=True, tile=(32, 32))
    rgb = np.repeat(plane[..., None], 3, axis=-1).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb)
    big, colour = (open_input(i) for i in find_inputs([tmp_path]))
    try:
        assert tifffile.TiffFile(tmp_path / "big.tif").is_bigtiff and big.axes == "yx"
        assert not isinstance(big.data, np.ndarray) and np.array_equal(big.data[32:64, 64:96], plane[32:64, 64:96])
        assert colour.axes == "yxc" and colour.voxel_size is None and np.array_equal(np.asarray(colour.data), rgb)
    finally:
        big.close(), colour.close()
