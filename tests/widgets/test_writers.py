"""Labels TIFF writer and reader (plain functions; napari's save/open path is in test_annotator)."""

import numpy as np
import pytest
import tifffile

from napari_sam.writers import get_labels_reader, read_labels_tiff, write_labels_tiff


def test_roundtrip_keeps_dtype_values_scale_and_translate(tmp_path):
    labels = np.zeros((3, 10, 12), np.uint32)
    labels[1, 2:4, 3:7] = 70000  # beyond uint16
    path = tmp_path / "cells.labels.tif"
    assert write_labels_tiff(str(path), labels, {"scale": (1.5, 0.5, 0.25), "translate": (0, 1, 2)}) == [str(path)]
    data, attrs = read_labels_tiff(path)
    assert data.dtype == np.uint32 and np.array_equal(data, labels)
    assert attrs["scale"] == (1.5, 0.5, 0.25) and attrs["translate"] == (0, 1, 2)
    # Other programs see the pixel size through the resolution tags.
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].tags["XResolution"].value == (4, 1)


def test_foreign_tiff_reads_pixel_size_from_resolution(tmp_path):
    path = tmp_path / "other.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.uint16), resolution=(4, 2))
    data, attrs = read_labels_tiff(path)
    assert data.shape == (4, 5) and attrs["scale"] == (0.5, 0.25)


def test_reader_hook_only_claims_labels_tiffs(tmp_path):
    assert get_labels_reader(str(tmp_path / "a.tif")) is None
    assert get_labels_reader([str(tmp_path / "a.labels.tif")]) is None
    path = tmp_path / "a.labels.tif"
    write_labels_tiff(str(path), np.ones((4, 4), np.uint8), {})
    layer_data = get_labels_reader(str(path))(str(path))
    assert layer_data[0][2] == "labels" and layer_data[0][1]["scale"] == (1.0, 1.0)


def test_bad_inputs_are_explained(tmp_path):
    with pytest.raises(ValueError, match=".tif or .tiff"):
        write_labels_tiff(str(tmp_path / "a.png"), np.zeros((2, 2), np.uint8), {})
    with pytest.raises(TypeError, match="integers"):
        write_labels_tiff(str(tmp_path / "a.tif"), np.zeros((2, 2)), {})
    with pytest.raises(ValueError, match="at least 2"):
        write_labels_tiff(str(tmp_path / "a.tif"), np.zeros(3, np.uint8), {})
    with pytest.raises(ValueError, match="3 axes"):
        write_labels_tiff(str(tmp_path / "a.tif"), np.zeros((2, 2, 2), np.uint8), {"scale": (1, 1)})
    with pytest.raises(ValueError, match="positive"):
        write_labels_tiff(str(tmp_path / "a.tif"), np.zeros((2, 2), np.uint8), {"scale": (0, 1)})
    with pytest.raises(FileNotFoundError):
        read_labels_tiff(tmp_path / "missing.tif")


@pytest.mark.parametrize("slices", [3, 4])
def test_a_stack_of_three_or_four_slices_is_not_stored_as_colour(tmp_path, slices):
    labels = np.arange(slices * 10 * 12, dtype=np.uint32).reshape(slices, 10, 12)
    path = write_labels_tiff(str(tmp_path / "stack.labels.tif"), labels, {"scale": [2.0, 0.5, 0.5]})[0]
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
        assert tif.series[0].shape == labels.shape
    data, _ = read_labels_tiff(path)
    np.testing.assert_array_equal(data, labels)
