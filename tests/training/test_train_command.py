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


def test_unwritable_out_folder_is_one_line_before_training(tmp_path, capsys, monkeypatch):
    from helpers import read_only_folder

    read_only_folder(monkeypatch, tmp_path)
    line = run_failing(capsys, ["--out", str(tmp_path / "m.pt"), *TINY])
    assert f"cannot write in the output folder {tmp_path}" in line and "read-only" in line


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


def test_sigterm_saves_the_run_and_the_same_command_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import napari_sam

    out = tmp_path / "m.pt"
    command = [sys.executable, "-m", "napari_sam.cli", "train", "--out", str(out), *TINY, "--log-every", "1"]
    command[command.index("--steps") + 1] = "60"
    env = dict(os.environ, PYTHONPATH=str(Path(napari_sam.__file__).parents[1]))
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:
            if line.startswith("step 2/"):
                proc.send_signal(signal.SIGTERM)
                break
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    partial = out.with_name(out.name + ".partial")
    assert partial.is_file() and not out.exists()
    step = torch.load(partial, weights_only=True)["step"]
    assert 2 <= step < 60
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming {partial} at step {step} of 60" in again.stdout
    assert out.is_file() and not partial.exists()


def test_an_unexpected_error_is_one_line_unless_debug(tmp_path, capsys, monkeypatch):
    from napari_sam.training import loop

    def broken(*args, **kwargs):
        raise RuntimeError("the loss went somewhere odd")

    monkeypatch.setattr(loop, "interactive_loss", broken)
    argv = ["train", "--out", str(tmp_path / "m.pt"), *TINY]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "RuntimeError: the loss went somewhere odd" in lines[0] and "--debug" in lines[0]
    with pytest.raises(RuntimeError, match="somewhere odd"):
        main([*argv, "--debug"])


def test_running_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    from napari_sam.training import loop

    def hungry(*args, **kwargs):
        raise MemoryError("the batch needs 40 GB")

    monkeypatch.setattr(loop, "interactive_loss", hungry)
    line = run_failing(capsys, ["--out", str(tmp_path / "m.pt"), *TINY])
    assert "memory" in line and "40 GB" in line


def test_crowded_flag_reaches_the_generated_source_and_the_provenance(tmp_path, capsys):
    from napari_sam.training.checkpoints import read_provenance

    out = tmp_path / "m.pt"
    assert main(["train", "--out", str(out), *TINY, "--crowded", "1"]) == 0
    assert "generated nuclei, 100 % crowded" in capsys.readouterr().out
    assert read_provenance(out)["crowded"] == 1.0
    line = run_failing(capsys, ["--out", str(tmp_path / "n.pt"), *TINY, "--crowded", "1.5"])
    assert "--crowded must be" in line


def test_the_provenance_holds_what_repeating_the_run_needs(tmp_path):
    from napari_sam.training.checkpoints import read_provenance

    out = tmp_path / "m.pt"
    args = ["--size", "tiny", "--steps", "1", "--batch-size", "2", "--objects", "1", "--rounds", "2",
            "--device", "cpu", "--seed", "7", "--lr", "1e-4", "--full-size-loss", "0.5", "--half",
            "--precision", "fp32"]
    assert main(["train", "--out", str(out), *args]) == 0
    found = read_provenance(out)
    assert {k: found[k] for k in ("seed", "lr", "rounds", "batch_size", "objects_per_image", "full_size_loss",
                                   "precision", "half", "steps")} == {
        "seed": 7, "lr": 1e-4, "rounds": 2, "batch_size": 2, "objects_per_image": 1, "full_size_loss": 0.5,
        "precision": "fp32", "half": True, "steps": 1}
