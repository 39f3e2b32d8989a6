"""OME-Zarr labels as a pyramid: NGFF multiscales metadata, and each level the nearest downsample of level 0."""

import json

import numpy as np
import pytest
import zarr
from scipy import ndimage

from napari_sam.batch.outputs import SMALLEST_LEVEL, pyramid_levels, write_results


def blobs(shape, seed=0):
    rng = np.random.default_rng(seed)
    labels, _ = ndimage.label(ndimage.gaussian_filter(rng.random(shape), 3) > 0.52)
    return labels.astype(np.uint32)


def multiscale_of(folder, version):
    if version == "0.5":
        return json.loads((folder / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0]
    return json.loads((folder / ".zattrs").read_text())["multiscales"][0]


def test_levels_halve_y_and_x_until_the_longer_side_is_256_or_less():
    assert SMALLEST_LEVEL == 256
    assert pyramid_levels((64, 64), "yx") == 1
    assert pyramid_levels((256, 100), "yx") == 1
    assert pyramid_levels((257, 100), "yx") == 2  # 257 -> 129
    assert pyramid_levels((40, 1100, 700), "zyx") == 4  # 1100 -> 550 -> 275 -> 138; z never counts
    assert pyramid_levels((10_000, 10_000), "yx") == 7  # ... 625 -> 313 -> 157


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_stack_is_written_as_a_pyramid_with_its_scales_and_nearest_levels(tmp_path, version):
    labels = blobs((3, 601, 300))
    ome = {"version": version, "axes": ["z", "y", "x"], "units": ["micrometer"] * 3, "source": "img.zarr"}
    write_results(tmp_path, "img", "ome-zarr", labels, [], (2.0, 0.5, 0.25), ome)
    folder = tmp_path / "img.ome.zarr" / "labels" / "sam"
    ms = multiscale_of(folder, version)
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]  # 601 -> 301 -> 151
    scales = [d["coordinateTransformations"] for d in ms["datasets"]]
    assert scales == [[{"type": "scale", "scale": [2.0, 0.5 * f, 0.25 * f]}] for f in (1, 2, 4)]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"] and ms["type"] == "nearest"
    assert version == "0.5" or ms["version"] == "0.4"
    group = zarr.open_group(str(folder), mode="r")
    level0 = group["0"][...]
    assert np.array_equal(level0, labels)
    for k, shape in ((1, (3, 301, 150)), (2, (3, 151, 75))):
        level = group[str(k)][...]
        assert level.shape == shape and level.dtype == np.uint32
        # The nearest downsample: level k's pixel (z, i, j) is level 0's (z, i * 2**k, j * 2**k).
        z, i, j = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
        assert np.array_equal(level, level0[z, i * 2**k, j * 2**k])
        assert set(np.unique(level)) <= set(np.unique(level0))  # no label id made up by averaging


def test_a_small_plane_keeps_one_level(tmp_path):
    labels = blobs((64, 80))
    write_results(tmp_path, "p", "ome-zarr", labels, [], None, {"version": "0.4", "axes": ["y", "x"]})
    ms = multiscale_of(tmp_path / "p.ome.zarr" / "labels" / "sam", "0.4")
    assert ms["datasets"] == [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}]}]
