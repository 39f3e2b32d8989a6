"""The segment command on folders of mixed inputs with the demo model, in this process: outputs, summary, resume."""

import csv
import errno
import json

import numpy as np
import pytest
import tifffile
import zarr
from batch_helpers import FAST, fingerprint, make_read_only, make_writable, nuclei, nuclei_stack, write_ome_zarr

import napari_sam.batch.job as job_module
import napari_sam.batch.outputs as outputs_module
from napari_sam.cli import main
from napari_sam.synthetic import make_nuclei_2d
from napari_sam.writers import read_labels_tiff


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    (folder / "day1").mkdir(parents=True)
    tifffile.imwrite(folder / "plane.tif", nuclei(seed=1), resolution=(2.0, 2.0), resolutionunit="MICROMETER")
    np.save(folder / "day1" / "stack.npy", nuclei_stack(seed=2))
    write_ome_zarr(folder / "day1" / "v4.ome.zarr", nuclei_stack(seed=3), scale=[2.0, 0.5, 0.5], version="0.4")
    write_ome_zarr(folder / "v5.zarr", nuclei(seed=4), axes="yx", scale=[0.3, 0.3], version="0.5")
    return folder


def test_a_folder_of_tiff_npy_and_ome_zarr_gives_labels_of_the_same_family_and_inputs_stay_untouched(data, tmp_path):
    before = fingerprint(data)
    make_read_only(data)
    out = tmp_path / "out"
    try:
        assert main(["segment", str(data), "--out", str(out), *FAST]) == 0
    finally:
        make_writable(data)
    assert fingerprint(data) == before  # nothing written to, not even touched
    labels, attrs = read_labels_tiff(out / "plane.labels.tif")
    assert labels.dtype == np.uint32 and labels.max() > 0 and attrs["scale"] == pytest.approx((0.5, 0.5))
    assert read_labels_tiff(out / "day1" / "stack.labels.tif")[0].shape == (2, 64, 64)
    with open(out / "day1" / "stack.objects.csv") as f:
        assert "bbox_z0" in f.readline()
    # NGFF 0.4: a zarr v2 labels group; the labels' scale and units those of the image.
    group = zarr.open_group(str(out / "day1" / "v4.ome.zarr"), mode="r")
    assert group["labels"].attrs["labels"] == ["sam"]
    meta = dict(group["labels/sam"].attrs)
    assert meta["image-label"]["source"] == {"image": "../../"}
    ms = meta["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.5, 0.5]
    assert ms["axes"][0]["unit"] == "micrometer"
    volume = group["labels/sam/0"][...]
    assert volume.dtype == np.uint32 and volume.shape == (2, 64, 64) and volume.max() > 0
    with open(out / "day1" / "v4.objects.csv") as f:
        assert len(list(csv.DictReader(f))) == len(np.unique(volume)) - 1
    # NGFF 0.5: zarr v3, everything under "ome".
    root = json.loads((out / "v5.ome.zarr" / "labels" / "sam" / "zarr.json").read_text())
    assert root["zarr_format"] == 3 and root["attributes"]["ome"]["version"] == "0.5"
    assert root["attributes"]["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [0.3, 0.3]
    assert zarr.open_array(str(out / "v5.ome.zarr" / "labels" / "sam" / "0"), mode="r").shape == (64, 64)


def test_bad_files_are_listed_with_their_reasons_and_never_stop_the_others(data, tmp_path, capsys, monkeypatch):
    cut = data / "cut.tif"
    tifffile.imwrite(cut, nuclei_stack(shape=(4, 64, 64)).astype(np.uint16), photometric="minisblack")
    cut.write_bytes(cut.read_bytes()[:9000])
    np.save(data / "line.npy", np.zeros((1, 100_000), np.uint16))
    (data / "day1" / "v4.ome.zarr" / "0" / "1" / "0" / "1").unlink()
    real = job_module.segment_plane

    def out_of_memory_on_v5(image, generator, say=None, spec=None):
        if np.asarray(image).shape == (64, 64) and np.asarray(image).mean() == np.asarray(zarr.open_array(
                str(data / "v5.zarr" / "0"), mode="r")).mean():
            raise MemoryError("cannot allocate 1.2 GiB")
        return real(image, generator, say, spec)

    monkeypatch.setattr(job_module, "segment_plane", out_of_memory_on_v5)
    assert main(["segment", str(data), "--out", str(tmp_path / "out"), *FAST, "--quiet"]) == 1
    err = capsys.readouterr().err
    summary = err[err.index("done:"):]
    assert "2 segmented, 0 skipped, 4 failed" in summary
    assert "cut.tif: cannot read" in summary and "truncated" in summary
    assert "line.npy: the image of shape (1, 100000) has planes of 1 x 100000 pixels" in summary
    assert "v4.ome.zarr: " in summary and "1 of its 8 chunk files missing" in summary
    assert "v5.zarr: out of memory (cannot allocate 1.2 GiB)" in summary
    assert (tmp_path / "out" / "plane.labels.tif").exists() and (tmp_path / "out" / "day1" / "stack.labels.tif").exists()


def test_an_interrupted_run_resumes_and_never_takes_a_partial_output_as_finished(data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real = outputs_module.store_level

    def interrupted_while_writing(array, labels):
        array[0] = labels[0].astype(np.uint32)  # part of the labels reached the disk, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs_module, "store_level", interrupted_while_writing)
    assert main(["segment", str(data / "day1"), "--out", str(out), *FAST]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    # The .npy stack before it is finished; the OME-Zarr has no final name, only its table.
    assert (out / "stack.labels.tif").exists() and not (out / "v4.ome.zarr").exists()
    assert (out / "v4.objects.csv").exists()
    monkeypatch.setattr(outputs_module, "store_level", real)
    assert main(["segment", str(data / "day1"), "--out", str(out), *FAST]) == 0
    err = capsys.readouterr().err
    assert "1 segmented, 1 skipped, 0 failed" in err and "v4.ome.zarr: " in err and "stack.npy: already" in err
    assert zarr.open_array(str(out / "v4.ome.zarr" / "labels" / "sam" / "0"), mode="r")[...].max() > 0
    hidden = [p for p in out.rglob(".*") if ".ome.zarr/" not in str(p.relative_to(out))]
    assert hidden == []  # the killed run's temporary folder was cleared


@pytest.mark.parametrize("which", ["tiff", "ome-zarr"])
def test_a_full_disk_keeps_no_half_output_and_stops_the_run(data, tmp_path, capsys, monkeypatch, which):
    out = tmp_path / "out"

    def disk_full(array, labels):
        array[0] = labels[0].astype(np.uint32)
        raise OSError(errno.ENOSPC, "No space left on device")

    if which == "tiff":
        monkeypatch.setattr(tifffile, "imwrite", lambda *a, **k: (_ for _ in ()).throw(
            OSError(errno.ENOSPC, "No space left on device")))
    else:
        monkeypatch.setattr(outputs_module, "store_level", disk_full)
        (data / "plane.tif").unlink()
        (data / "day1" / "stack.npy").unlink()
    assert main(["segment", str(data), "--out", str(out), *FAST, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "the disk of the results folder" in err and "is full (No space left on device)" in err
    assert "not started: " in err and "free space and run again" in err
    left = [p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".objects.csv")]
    assert left == []  # no labels, no temporary file


def test_an_unexpected_error_on_one_input_fails_only_that_input(data, tmp_path, capsys, monkeypatch):
    def broken_on_small(image, generator, say=None, spec=None):
        raise RuntimeError("a bug met on this plane")

    monkeypatch.setattr(job_module, "segment_plane", broken_on_small)
    assert main(["segment", str(data / "day1" / "stack.npy"), str(data / "plane.tif"), "--out",
                 str(tmp_path / "out"), *FAST, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "1 segmented, 0 skipped, 1 failed" in err
    assert "plane.tif: unexpected error: RuntimeError: a bug met on this plane" in err


def test_a_results_folder_inside_an_ome_zarr_input_is_refused(data, tmp_path, capsys):
    image = data / "day1" / "v4.ome.zarr"
    before = fingerprint(image)
    assert main(["segment", str(image), "--out", str(image / "results"), *FAST]) == 2
    assert "lies inside the input" in capsys.readouterr().err
    assert fingerprint(image) == before and not (image / "results").exists()


def test_a_plane_much_larger_than_the_model_input_goes_by_tiles(tmp_path, capsys, monkeypatch):
    import napari_sam.tiles as tiles

    big = make_nuclei_2d((600, 560), n_objects=(20, 24), seed=9)[0]
    tifffile.imwrite(tmp_path / "mosaic.tif", big)
    calls = []
    segment_tiled = tiles.segment_tiled
    monkeypatch.setattr(tiles, "segment_tiled", lambda *a, **k: calls.append(k) or segment_tiled(*a, **k))
    # 600 px > 2 x the demo model's 256 px input: tiles of 256 with a 24 px halo
    assert main(["segment", str(tmp_path / "mosaic.tif"), "--out", str(tmp_path / "tiled"), *FAST,
                 "--halo", "24"]) == 0
    assert len(calls) == 1 and calls[0]["halo"] == 24 and "tiles" in capsys.readouterr().err
    tiled, _ = read_labels_tiff(tmp_path / "tiled" / "mosaic.labels.tif")
    assert tiled.shape == big.shape and tiled.max() > 0
    # --tile 0: the plane is shrunk to the model's input whole, as Segment Anything's generator does
    assert main(["segment", str(tmp_path / "mosaic.tif"), "--out", str(tmp_path / "whole"), *FAST,
                 "--tile", "0"]) == 0
    assert len(calls) == 1
    whole, _ = read_labels_tiff(tmp_path / "whole" / "mosaic.labels.tif")
    assert whole.shape == big.shape and not np.array_equal(whole, tiled)
