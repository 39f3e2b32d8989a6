"""Labels TIFF writer and reader (plain functions; napari's save/open path is in test_napari_doors)."""

import errno
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam import writers
from napari_sam.writers import get_labels_reader, read_labels_tiff, write_labels_tiff

SRC = Path(writers.__file__).resolve().parents[1]


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


# ------------------------------------------------------- saving never destroys
def saved_stack(path, value=7):
    labels = np.zeros((6, 40, 50), np.uint32)
    labels[2:4, 5:20, 10:30] = value
    write_labels_tiff(str(path), labels, {"scale": (2.0, 0.5, 0.5)})
    return labels


def leftovers(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


def test_a_full_disk_halfway_through_a_save_leaves_the_earlier_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "cells.labels.tif"
    earlier = saved_stack(path)
    real_imwrite = tifffile.imwrite

    def half_then_full(file, data, **kwargs):
        # Encode for real, write the first half where the writer writes, then fail as a full disk does.
        encoded = io.BytesIO()
        real_imwrite(encoded, data, **kwargs)
        half = encoded.getvalue()[: len(encoded.getvalue()) // 2]
        if isinstance(file, (str, os.PathLike)):
            with open(file, "wb") as f:
                f.write(half)
        else:
            file.write(half)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writers.tifffile, "imwrite", half_then_full)
    with pytest.raises(OSError, match="No space left"):
        write_labels_tiff(str(path), np.ones((6, 40, 50), np.uint32), {"scale": (1, 1, 1)})
    monkeypatch.undo()
    data, attrs = read_labels_tiff(path)
    np.testing.assert_array_equal(data, earlier)
    assert attrs["scale"] == (2.0, 0.5, 0.5)
    assert leftovers(tmp_path) == []  # the half-written temporary file is removed


KILLED_SAVE = """
import sys
import numpy as np
sys.path.insert(0, {src!r})
from napari_sam.writers import write_labels_tiff
# Large and hard to compress, so that writing takes a while.
labels = np.random.default_rng(0).integers(0, 2**32, size=(24, 1024, 1024), dtype=np.uint32)
print("saving", flush=True)
write_labels_tiff({path!r}, labels, {{"scale": (1.0, 1.0, 1.0)}})
print("saved", flush=True)
"""


def test_a_save_killed_halfway_leaves_the_earlier_file_intact(tmp_path):
    path = tmp_path / "cells.labels.tif"
    earlier = saved_stack(path)
    size_before = path.stat().st_size
    script = textwrap.dedent(KILLED_SAVE.format(src=str(SRC), path=str(path)))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saving"
        # Kill it once bytes of the new file are on disk, wherever the writer puts them.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [p for p in tmp_path.iterdir() if p.stat().st_size > 0 and (p.name.startswith(".") or p.stat().st_size != size_before)]
            if partial:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the save finished before it could be killed: make the array larger"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    data, attrs = read_labels_tiff(path)
    np.testing.assert_array_equal(data, earlier)
    assert attrs["scale"] == (2.0, 0.5, 0.5)


def page_offsets(path):
    with tifffile.TiffFile(path) as tif:
        return [page.offset for page in tif.pages]


@pytest.mark.parametrize("cut", ["empty", "header", "second page", "mid page", "last byte"])
def test_a_truncated_file_is_refused_with_a_clear_error(tmp_path, cut):
    path = tmp_path / "cells.labels.tif"
    saved_stack(path)
    raw = path.read_bytes()
    offsets = page_offsets(path)
    keep = {"empty": 0, "header": 5, "second page": offsets[1], "mid page": (offsets[2] + offsets[3]) // 2, "last byte": len(raw) - 1}[cut]
    damaged = tmp_path / "damaged.labels.tif"
    damaged.write_bytes(raw[:keep])
    with pytest.raises(ValueError, match="truncated|incomplete|damaged") as err:
        read_labels_tiff(damaged)
    assert str(damaged) in str(err.value)


def test_a_foreign_tiff_cut_short_is_refused_too(tmp_path):
    path = tmp_path / "other.tif"
    tifffile.imwrite(path, np.arange(4 * 64 * 64, dtype=np.uint16).reshape(4, 64, 64), photometric="minisblack")  # uncompressed
    damaged = tmp_path / "damaged.tif"
    raw = path.read_bytes()
    for keep in (len(raw) - 100, len(raw) // 2):
        damaged.write_bytes(raw[:keep])
        with pytest.raises(ValueError, match="truncated|incomplete|damaged"):
            read_labels_tiff(damaged)


def write_with_description(path, description, shape=(2, 5, 6)):
    tifffile.imwrite(path, np.ones(shape, np.uint16), description=json.dumps(description), metadata=None, photometric="minisblack")


@pytest.mark.parametrize(
    "fields, complaint",
    [
        ({"translate": [0, 0, 0]}, "scale is missing"),
        ({"scale": "big", "translate": [0, 0, 0]}, "scale is unusable"),
        ({"scale": [1, -2, 1], "translate": [0, 0, 0]}, "scale is unusable"),
        ({"scale": [1, 1], "translate": [0, 0, 0]}, "scale is unusable"),
        ({"scale": [3, 1, 1]}, "translate is missing"),
    ],
)
def test_our_marker_with_damaged_fields_opens_with_a_warning_naming_the_file(tmp_path, fields, complaint):
    path = tmp_path / "odd.labels.tif"
    write_with_description(path, {"format": "napari-sam-annotator labels", **fields})
    with pytest.warns(UserWarning, match=complaint) as caught:
        data, attrs = read_labels_tiff(path)
    assert all(str(path) in str(w.message) for w in caught)
    assert data.shape == (2, 5, 6)
    expected_scale = tuple(float(v) for v in fields["scale"]) if complaint.startswith("translate") else (1.0, 1.0, 1.0)
    assert attrs["scale"] == expected_scale and len(attrs["translate"]) == 3


def test_a_labels_tif_without_voxel_size_opens_with_a_warning(tmp_path):
    # What napari's builtin writer leaves: the labels, no scale anywhere.
    path = tmp_path / "cells.labels.tif"
    tifffile.imwrite(path, np.ones((3, 4, 5), np.uint32), photometric="minisblack")
    with pytest.warns(UserWarning, match="no voxel size") as caught:
        ((data, attrs, kind),) = get_labels_reader(str(path))(str(path))
    assert str(path) in str(caught[0].message)
    assert kind == "labels" and data.shape == (3, 4, 5) and "scale" not in attrs
