"""The napari reader for OME-Zarr folders: lazy multiscale layers with the metadata's voxel size."""

import sys
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "batch"))
from batch_helpers import write_ome_zarr  # noqa: E402

from napari_sam.batch.outputs import write_ome_zarr_labels  # noqa: E402
from napari_sam.ome_zarr_reader import get_ome_zarr_reader, read_ome_zarr  # noqa: E402


def image(shape=(3, 80, 90), seed=0):
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(np.uint16)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_an_ome_zarr_image_opens_lazily_with_its_voxel_size(tmp_path, version):
    data = image()
    path = write_ome_zarr(tmp_path / "cells.ome.zarr", data, axes="zyx", scale=[2.0, 0.5, 0.5], version=version)
    reader = get_ome_zarr_reader(str(path))
    assert reader is not None
    [(layer, attributes, kind)] = reader(str(path))
    assert kind == "image" and isinstance(layer, da.Array)  # nothing read until napari asks
    assert attributes["scale"] == [2.0, 0.5, 0.5]
    assert np.array_equal(np.asarray(layer), data)


def test_labels_written_by_segment_open_as_a_multiscale_layer_over_the_image_they_came_from(tmp_path):
    data = image((1, 600, 520))
    source = write_ome_zarr(tmp_path / "scan.ome.zarr", data, axes="zyx", scale=[1.0, 0.25, 0.25])
    labels = np.zeros((1, 600, 520), np.uint32)
    labels[0, 100:300, 50:200] = 7
    labels[0, 400:590, 300:500] = 9
    out = tmp_path / "results" / "scan.ome.zarr"
    out.parent.mkdir()
    write_ome_zarr_labels(out, labels, (1.0, 0.25, 0.25), {"version": "0.4", "axes": ["z", "y", "x"],
                                                            "units": ["micrometer"] * 3, "source": str(source)})
    layers = get_ome_zarr_reader(str(out))(str(out))
    assert [kind for _, _, kind in layers] == ["image", "labels"]
    levels, attributes, _ = layers[1]
    assert attributes["multiscale"] is True and len(levels) >= 2
    assert attributes["scale"] == [1.0, 0.25, 0.25]
    assert all(isinstance(level, da.Array) for level in levels)
    assert np.array_equal(np.asarray(levels[0]), labels)
    assert np.array_equal(np.asarray(levels[1]), labels[:, ::2, ::2])
    # the input moved away: the labels still open, alone
    source.rename(tmp_path / "elsewhere.ome.zarr")
    assert [kind for _, _, kind in read_ome_zarr(str(out))] == ["labels"]


def test_channels_become_one_layer_each_and_the_channel_axis_leaves_the_scale(tmp_path):
    data = image((2, 3, 40, 50))
    path = write_ome_zarr(tmp_path / "two.ome.zarr", data, axes="czyx", scale=[1.0, 3.0, 0.5, 0.5])
    [(layer, attributes, kind)] = read_ome_zarr(str(path))
    assert attributes["channel_axis"] == 0 and attributes["scale"] == [3.0, 0.5, 0.5]


def test_other_paths_are_left_to_other_readers(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (tmp_path / "x.tif").write_bytes(b"")
    assert get_ome_zarr_reader(str(plain)) is None
    assert get_ome_zarr_reader(str(tmp_path / "x.tif")) is None
    assert get_ome_zarr_reader([str(plain)]) is None
    import zarr

    zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")  # a zarr group, but not OME
    assert get_ome_zarr_reader(str(tmp_path / "bare.zarr")) is None


def test_a_level_named_in_the_metadata_but_missing_is_refused_with_its_name(tmp_path):
    import shutil

    path = write_ome_zarr(tmp_path / "cut.ome.zarr", image())
    shutil.rmtree(path / "0")
    with pytest.raises(ValueError, match=r"levels \['0'\] named in its metadata are missing"):
        read_ome_zarr(str(path))
