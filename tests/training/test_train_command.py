"""The train command: expected problems end with one line on stderr and a non-zero status."""

import numpy as np
import pytest
import tifffile
import torch

from napari_sam.cli import main
from napari_sam.model.build import build_sam
from napari_sam.training import training_config

TINY = ["--size", "tiny", "--steps", "1", "--batch-size", "1", "--objects", "1", "--rounds", "1", "--device", "cpu"]


def run_failing(capsys, argv):
    code = main(["train", *argv])
    err = capsys.readouterr().err
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert lines and lines[-1].startswith("napari-sam-annotator train: error: ")
    assert len([line for line in lines if "error:" in line]) == 1
    return lines[-1]


def test_generated_run_succeeds(tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["train", "--out", str(out), *TINY]) == 0
    assert out.is_file()
    assert "saved" in capsys.readouterr().out


def test_existing_out(tmp_path, capsys):
    out = tmp_path / "m.pt"
    out.write_bytes(b"x")
    line = run_failing(capsys, ["--out", str(out), *TINY])
    assert "--overwrite" in line and out.read_bytes() == b"x"


def test_folder_without_pairs(tmp_path, capsys):
    line = run_failing(capsys, ["--data", str(tmp_path), "--out", str(tmp_path / "m.pt"), *TINY])
    assert "images/" in line


def test_label_shape_mismatch(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.zeros((64, 64), np.uint8))
    tifffile.imwrite(tmp_path / "labels" / "a.tif", np.ones((32, 64), np.uint16))
    line = run_failing(capsys, ["--data", str(tmp_path), "--out", str(tmp_path / "m.pt"), *TINY])
    assert "a.tif" in line and "shape" in line


def test_all_labels_empty(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.zeros((64, 64), np.uint8))
    tifffile.imwrite(tmp_path / "labels" / "a.tif", np.zeros((64, 64), np.uint16))
    line = run_failing(capsys, ["--data", str(tmp_path), "--out", str(tmp_path / "m.pt"), *TINY])
    assert "empty" in line


def test_init_of_another_size(tmp_path, capsys):
    ckpt = tmp_path / "tiny.pt"
    torch.save(build_sam(training_config("tiny")).state_dict(), ckpt)
    args = ["--init", str(ckpt), "--out", str(tmp_path / "m.pt"), *TINY]
    args[args.index("tiny", args.index("--size"))] = "demo"
    line = run_failing(capsys, args)
    assert "--size" in line


def test_init_that_is_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "notes.pt"
    bad.write_text("not weights")
    line = run_failing(capsys, ["--init", str(bad), "--out", str(tmp_path / "m.pt"), *TINY])
    assert "notes.pt" in line


def test_resume_without_unfinished_run(tmp_path, capsys):
    line = run_failing(capsys, ["--resume", "--out", str(tmp_path / "m.pt"), *TINY])
    assert "no unfinished run" in line


def test_unknown_size(tmp_path, capsys):
    args = ["--out", str(tmp_path / "m.pt"), *TINY]
    args[args.index("tiny")] = "giant"
    line = run_failing(capsys, args)
    assert "giant" in line


def test_subcommand_is_required(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code != 0
