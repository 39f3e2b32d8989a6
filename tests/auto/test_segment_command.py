"""The segment command end to end on small generated images (the demo model, a coarse grid)."""

import csv

import numpy as np
import pytest
import tifffile

from napari_sam.cli import main
from napari_sam.synthetic import make_nuclei_2d, make_nuclei_3d
from napari_sam.writers import read_labels_tiff

FAST = ["--points-per-side", "8", "--model", "demo", "--no-cache"]


@pytest.fixture
def inputs(tmp_path):
    img, _ = make_nuclei_2d((96, 96), n_objects=(5, 8), seed=4)
    stack, _ = make_nuclei_3d((3, 64, 64), n_objects=(3, 5), seed=4)
    tifffile.imwrite(tmp_path / "plane.tif", img)
    np.save(tmp_path / "stack.npy", stack)
    return tmp_path / "plane.tif", tmp_path / "stack.npy"


def test_images_and_stacks_give_labels_and_tables(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", *map(str, inputs), "--out", str(out), *FAST, "--voxel-size", "2", "1", "1"]) == 1
    assert "--voxel-size has 3 values but this image has 2 axes" in capsys.readouterr().err
    assert main(["segment", *map(str, inputs), "--out", str(out), *FAST]) == 0
    labels, _ = read_labels_tiff(out / "plane.labels.tif")
    assert labels.dtype == np.uint32 and labels.shape == (96, 96) and labels.max() > 0
    with open(out / "plane.objects.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(np.unique(labels)) - 1 and {"label", "area", "predicted_iou"} <= set(rows[0])
    volume, _ = read_labels_tiff(out / "stack.labels.tif")
    assert volume.shape == (3, 64, 64)
    with open(out / "stack.objects.csv") as f:
        assert "bbox_z0" in f.readline()


def test_finished_inputs_are_skipped_and_half_written_ones_are_not_finished(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(inputs[0]), "--out", str(out), *FAST]) == 0
    capsys.readouterr()
    assert main(["segment", str(inputs[0]), "--out", str(out), *FAST]) == 0
    assert "skipped" in capsys.readouterr().err
    (out / "plane.labels.tif").unlink()  # a run killed between the table and the labels
    assert main(["segment", str(inputs[0]), "--out", str(out), *FAST]) == 0
    assert "1 segmented" in capsys.readouterr().err and (out / "plane.labels.tif").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.parametrize("extra, message", [
    (["--pred-iou-thresh", "1.5"], "pred_iou_thresh must lie in [0, 1]"),
    (["--points-per-side", "0"], "points_per_side must be between"),
    (["--model", "no_such_model"], "neither a known model"),
    (["--nms-score", "area"], "nms_score must be one of predicted_iou, stability_score"),
    (["--gap-fill-iou-thresh", "2"], "gap_fill_iou_thresh must lie in [0, 1]"),
    (["--nms-convexity", "-1"], "nms_convexity must lie in [0, 100]"),
])
def test_bad_settings_end_in_one_line(inputs, tmp_path, capsys, extra, message):
    assert main(["segment", str(inputs[0]), "--out", str(tmp_path / "o"), *FAST, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_unwritable_out_and_missing_input(inputs, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["segment", str(inputs[0]), "--out", str(blocker), *FAST]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "o"), *FAST]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_constant_image_fails_plainly(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "flat.tif", np.full((40, 40), 9, np.uint16))
    assert main(["segment", str(tmp_path / "flat.tif"), "--out", str(tmp_path / "o"), *FAST]) == 1
    assert "constant" in capsys.readouterr().err
