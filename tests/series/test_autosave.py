"""Autosaver timing (driven by a fake clock), and labels on disk after the process is killed mid-save."""

import errno
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

from napari_sam.series import Autosaver, ImageSeries
from napari_sam.writers import read_labels_tiff


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_saves_once_after_the_pause_following_the_last_change():
    clock, saves = Clock(), []
    saver = Autosaver(lambda: saves.append(clock.now), delay_s=1.5, clock=clock)
    assert not saver.tick() and saves == []  # nothing changed
    saver.changed()
    clock.now += 1.0
    saver.changed()  # a brush stroke goes on: the pause starts again
    clock.now += 1.0
    assert not saver.tick() and saves == []
    clock.now += 0.6
    assert saver.tick() and saves == [102.6] and not saver.dirty
    clock.now += 10
    assert not saver.tick() and saves == [102.6]


def test_flush_saves_at_once_and_only_when_something_changed():
    saves = []
    saver = Autosaver(lambda: saves.append(1), delay_s=60, clock=Clock())
    assert saver.flush() and saves == []
    saver.changed()
    assert saver.flush() and saves == [1]


def test_a_failed_save_is_reported_kept_unsaved_and_tried_again_after_a_pause():
    clock, errors, attempts = Clock(), [], []

    def save():
        attempts.append(clock.now)
        if len(attempts) == 1:
            raise OSError(errno.ENOSPC, "labels of img1 not saved: the disk is full")

    saver = Autosaver(save, delay_s=1.0, clock=clock, on_error=errors.append)
    saver.changed()
    clock.now += 1.0
    assert not saver.tick() and saver.dirty and "disk is full" in str(errors[0])
    assert saver.last_error is errors[0]
    clock.now += 0.5
    assert not saver.tick() and len(attempts) == 1  # not hammered at every tick
    clock.now += 0.5
    assert saver.tick() and not saver.dirty and saver.last_error is None and len(attempts) == 2
    assert saver.flush()


def test_flush_catches_an_edit_that_sent_no_event():
    labels = np.zeros((4, 4), np.uint32)
    saved = []
    saver = Autosaver(lambda: saved.append(labels.copy()), fingerprint=lambda: labels.tobytes(), clock=Clock())
    assert saver.flush() and saved == []
    labels[1, 1] = 3  # napari's undo changes the data without a paint event
    assert saver.flush() and saved[-1][1, 1] == 3
    assert saver.flush() and len(saved) == 1


def test_delay_must_not_be_negative():
    with pytest.raises(ValueError, match="delay_s"):
        Autosaver(lambda: None, delay_s=-1)


# The child edits labels in steps and autosaves each one; at step 5 it stops inside the write
# (the new file is on disk under its temporary name, not yet moved over the old one) until killed.
CHILD = """
import sys, time
import numpy as np
import tifffile
from napari_sam.series import Autosaver, ImageSeries

series = ImageSeries(sys.argv[1])
labels = series.read_labels(0)
real = tifffile.imwrite
step = 0

def imwrite(*args, **kwargs):
    real(*args, **kwargs)
    if step == 5:
        print("mid-write", flush=True)
        time.sleep(60)

tifffile.imwrite = imwrite
saver = Autosaver(lambda: series.save_labels(0, labels), delay_s=0)
for step in range(1, 10):
    labels[step % 4, step:step + 6, :step] = step
    saver.changed()
    saver.tick()
    print("saved", step, flush=True)
"""


def state_after(step, shape):
    labels = np.zeros(shape, np.uint32)
    for k in range(1, step + 1):
        labels[k % 4, k:k + 6, :k] = k
    return labels


def test_killed_mid_save_the_labels_on_disk_are_the_last_complete_save(tmp_path):
    shape = (4, 64, 64)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros(shape, np.uint16), photometric="minisblack")
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in child.stdout:
            lines.append(line.strip())
            if line.strip() == "mid-write":
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(30)
    assert lines == [f"saved {k}" for k in range(1, 5)] + ["mid-write"]
    labels_dir = tmp_path / "labels"
    assert [p for p in labels_dir.iterdir() if p.name.endswith(".tmp")], "the kill did not land inside the write"
    data, _ = read_labels_tiff(labels_dir / "stack.tif")  # whole: a cut file would raise
    np.testing.assert_array_equal(data, state_after(4, shape))
    # Opening the series again (the dead process's lock is stale) clears the leftover and reads step 4.
    series = ImageSeries(tmp_path)
    assert not series.read_only
    assert [p.name for p in labels_dir.iterdir()] == ["stack.tif"]
    np.testing.assert_array_equal(series.read_labels(0), state_after(4, shape))
