"""The fine-tuning job: train as a child process, progress, cancel, registration, and nothing left behind.

Most runs use tests/fake_train.py (train's lines, files and exit statuses in a
fraction of a second); one runs the real ``train`` for 2 steps.
"""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam.finetune import (
    FineTuneJob, RunLock, check_enough_objects, count_labelled_objects, family_name, list_models, next_model_path,
)
from napari_sam.finetune import job as J
from napari_sam.finetune.lines import error_message, parse_step
from napari_sam.synthetic import make_nuclei_2d

FAKE = str(Path(__file__).parents[1] / "fake_train.py")


def make_series(folder: Path, n_images=3, in_images_folder=True, objects=(6, 8)) -> Path:
    images = folder / "images" if in_images_folder else folder
    images.mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(exist_ok=True)
    for i in range(n_images):
        image, labels = make_nuclei_2d((96, 96), n_objects=objects, seed=i)
        tifffile.imwrite(images / f"img{i}.tif", image)
        tifffile.imwrite(folder / "labels" / f"img{i}.tif", labels.astype(np.uint16))
    return folder


@pytest.fixture
def series(tmp_path):
    return make_series(tmp_path / "series")


def fake_job(series, mode="ok", monkeypatch=None, **kwargs):
    if monkeypatch is not None:
        monkeypatch.setenv("FAKE_TRAIN", mode)
    return FineTuneJob(series, "demo", entry=FAKE, **kwargs)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ".finetune.lock") if folder.is_dir() else []


# ------------------------------------------------------------------ lines, names, checks
def test_step_lines_and_error_lines_are_read():
    line = ("step 10/20  loss 0.2667  mIoU 0.701 first prompt, 0.820 after 3 round(s)  lr 3.90e-04  0.82 it/s  "
            "ETA 1:02:03")
    s = parse_step(line)
    assert (s.step, s.total, s.loss, s.seconds_left, s.first_prompt_miou) == (10, 20, 0.2667, 3723.0, 0.701)
    assert parse_step("step 3/9  loss nan  ETA 0:12").seconds_left == 12.0
    assert parse_step("training demo from model 'demo'") is None
    err = ["napari-sam-annotator train: warning: x", "napari-sam-annotator train: error: cannot write m.pt: the disk is full"]
    assert error_message(err, 2) == "cannot write m.pt: the disk is full"
    assert "exit status -9" in error_message([], -9)


def test_versioned_names_skip_every_number_used(tmp_path):
    assert family_name("demo") == "demo"
    assert family_name(str(tmp_path / "demo-ft3.pt")) == "demo"
    assert family_name("sam2.1") == "sam2.1"
    assert next_model_path(tmp_path, "demo") == tmp_path / "demo-ft1.pt"
    (tmp_path / "demo-ft1.pt").touch()
    (tmp_path / "demo-ft4.pt.partial").touch()  # an interrupted run keeps its number
    (tmp_path / "vit_b-ft9.pt").touch()
    assert next_model_path(tmp_path, str(tmp_path / "demo-ft1.pt")) == tmp_path / "demo-ft5.pt"
    with pytest.raises(ValueError, match="no base model"):
        family_name(" ")


def test_too_few_objects_and_too_few_images_are_refused_before_starting(tmp_path):
    few = make_series(tmp_path / "few", n_images=1, objects=(3, 3))
    assert count_labelled_objects(few) == {"img0": 3}
    with pytest.raises(ValueError, match="too few labelled objects.*3 in 1 image.*at least 10"):
        FineTuneJob(few, "demo", entry=FAKE).start()
    one = make_series(tmp_path / "one", n_images=1, objects=(12, 14), in_images_folder=False)
    assert check_enough_objects(one)["img0"] >= 10  # images directly in the series folder
    with pytest.raises(ValueError, match="at least 2 labelled images"):
        check_enough_objects(one, held_out=0.2)
    assert not (few / "models").exists() or leftovers(few / "models") == []


# ------------------------------------------------------------------ runs with the stand-in
def test_a_run_registers_its_model_with_its_report(series, monkeypatch):
    job = fake_job(series, "ok", monkeypatch, steps=5, held_out=0.25)
    out = job.start()
    assert out == series / "models" / "demo-ft1.pt"
    assert job.wait(30)
    state = job.state()
    assert state.phase == "done", state.error
    assert (state.step, state.total, state.loss) == (5, 5, 0.2)
    (record,) = list_models(series / "models")
    assert record.path == str(out) and record.base_model == "demo" and record.data == str(series)
    assert record.scores("before")["noc90"] == 7.5 and record.scores("after")["msa"] == 0.52
    assert record.held_out == 0.25 and record.steps == 5
    assert not (series / "models" / ".finetune.lock").exists()
    again = fake_job(series, "ok", steps=2)  # the next run gets the next number
    assert again.start().name == "demo-ft2.pt" and again.wait(30)
    assert [r.name for r in list_models(series / "models")] == ["demo-ft1", "demo-ft2"]


@pytest.mark.parametrize("mode, message", [
    ("disk_full", "the disk is full"),
    ("bad_model", "cannot be loaded"),
    ("no_report", "report .* missing"),
])
def test_a_failed_run_says_why_and_leaves_nothing(series, monkeypatch, mode, message):
    job = fake_job(series, mode, monkeypatch, steps=3, held_out=0.25)
    job.start()
    assert job.wait(30)
    state = job.state()
    assert state.phase == "failed" and state.record is None
    assert re.search(message, state.error), state.error
    assert leftovers(series / "models") == [] and list_models(series / "models") == []


def test_cancel_stops_the_process_now_and_leaves_nothing(series, monkeypatch, tmp_path):
    pid_file = tmp_path / "pid"
    monkeypatch.setenv("FAKE_TRAIN_PID_FILE", str(pid_file))
    job = fake_job(series, "slow", monkeypatch, steps=500)
    job.start()
    deadline = time.monotonic() + 20
    while job.state().step < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.state().phase == "training"
    job.cancel()
    assert job.wait(J.CANCEL_GRACE_S + 5)
    assert job.state().phase == "cancelled"
    assert not process_alive(int(pid_file.read_text()))
    assert leftovers(series / "models") == []  # its saved state (.partial) was removed too


def test_a_second_run_on_the_series_is_refused_while_one_runs(series, monkeypatch):
    first = fake_job(series, "slow", monkeypatch, steps=500)
    first.start()
    try:
        with pytest.raises(ValueError, match="already running on this series"):
            fake_job(series, "slow", steps=5).start()
    finally:
        first.cancel()
        assert first.wait(10)
    second = fake_job(series, "ok", monkeypatch, steps=2)
    second.start()  # the lock went with the first run
    assert second.wait(30) and second.state().phase == "done"


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import json
    import socket

    (tmp_path / ".finetune.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    lock = RunLock(tmp_path)
    lock.acquire()
    assert json.loads((tmp_path / ".finetune.lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / ".finetune.lock").exists()
    (tmp_path / ".finetune.lock").write_text("")  # being written by a process that just took it
    with pytest.raises(ValueError, match="already running"):
        RunLock(tmp_path).acquire()
    os.utime(tmp_path / ".finetune.lock", (time.time() - 60, time.time() - 60))  # left half-written long ago
    RunLock(tmp_path).acquire()


def test_a_time_budget_stops_training_and_keeps_the_model_of_the_step_reached(series, monkeypatch):
    job = fake_job(series, "slow", monkeypatch, steps=1000, minutes=1.5 / 60)
    job.start()
    assert job.wait(30)
    state = job.state()
    assert state.phase == "done", state.error
    assert 1 <= state.record.steps < 1000
    assert leftovers(series / "models") == ["demo-ft1.json", "demo-ft1.pt"]


# ------------------------------------------------------------------ napari dies
PARENT = textwrap.dedent("""
    import sys, threading, time
    from napari_sam.finetune import FineTuneJob
    job = FineTuneJob(sys.argv[1], "demo", steps=10000, entry=sys.argv[2])
    if sys.argv[3] == "thread":  # started from a worker thread: only the stdin guard holds
        t = threading.Thread(target=job.start); t.start(); t.join()
    else:
        job.start()
    print("started", flush=True)
    time.sleep(600)
""")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (ended, not yet reaped by its new parent) is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL of the parent: POSIX")
@pytest.mark.parametrize("started_from", ["main", "thread"])
def test_the_training_process_dies_with_napari(series, tmp_path, monkeypatch, started_from):
    pid_file = tmp_path / "pid"
    # quiet: no lines, so the child is not ended by writing into the dead parent's pipe, only by the guards
    env = dict(os.environ, FAKE_TRAIN="quiet", FAKE_TRAIN_PID_FILE=str(pid_file),
               PYTHONPATH=os.pathsep.join([str(Path(J.__file__).parents[2]), os.environ.get("PYTHONPATH", "")]))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(series), FAKE, started_from], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 20
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        child = int(pid_file.read_text())
        assert process_alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while process_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(child), "the training process outlived napari"
    finally:
        parent.kill()
        parent.wait(10)


# ------------------------------------------------------------------ the real train command
def test_a_real_two_step_run_is_registered(series):
    job = FineTuneJob(series, "demo", steps=2, device="cpu",
                      extra_args=("--batch-size", "1", "--objects", "2", "--log-every", "1"))
    out = job.start()
    assert job.wait(120)
    state = job.state()
    assert state.phase == "done", state.error
    assert (state.step, state.total) == (2, 2) and state.loss > 0
    assert [r.path for r in list_models(series / "models")] == [str(out)]
    from napari_sam.model.zoo import load_model

    assert load_model(out).config == load_model("demo").config


def test_finetune_imports_no_gui_toolkit():
    from test_imports import is_gui_module, modules_loaded_by

    loaded = modules_loaded_by("import napari_sam.finetune, napari_sam.finetune.child")
    assert "napari_sam.finetune" in loaded
    assert [m for m in loaded if is_gui_module(m)] == []


def test_a_real_cancel_removes_the_state_train_saved(series):
    # --save-every 1: train has saved a resumable state (.partial) when Cancel comes, and saves one more on SIGTERM
    job = FineTuneJob(series, "demo", steps=1000, device="cpu",
                      extra_args=("--batch-size", "1", "--objects", "2", "--log-every", "1", "--save-every", "1"))
    job.start()
    deadline = time.monotonic() + 90
    while job.state().step < 1 and time.monotonic() < deadline and not job.wait(0.05):
        pass
    assert job.state().step >= 1, job.state()
    job.cancel()
    assert job.wait(J.CANCEL_GRACE_S + 10)
    assert job.state().phase == "cancelled"
    assert leftovers(series / "models") == []


def test_a_real_error_of_train_is_the_message(series):
    job = FineTuneJob(series, "demo", steps=2, device="cpu", extra_args=("--lr", "-1"))
    job.start()
    assert job.wait(60)
    state = job.state()
    assert state.phase == "failed" and state.error == "--lr must be a positive number, got -1.0"
    assert leftovers(series / "models") == []


def test_the_demo_family_keeps_generated_nuclei_in_its_fine_tuning(series):
    from napari_sam.finetune.job import FineTuneJob

    def command(base):
        job = FineTuneJob(series, base, steps=2)
        job.out = Path(series) / "models" / "x.pt"
        return job._command(2)

    assert command("demo")[-2:] == ["--replay", "0.3"]
    assert command(str(Path(series) / "models" / "demo-ft2.pt"))[-2:] == ["--replay", "0.3"]
    assert "--replay" not in command("vit_b")
