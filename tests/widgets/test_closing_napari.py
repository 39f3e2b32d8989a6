"""Closing napari while the widgets still compute must end the program cleanly.

Each case runs napari in its own process, as a user would, and closes the
viewer while background work is running or has just run. The process must
exit with code 0 and print no Qt/thread error. A running embedding is allowed
to finish (a forward pass cannot be stopped halfway; waiting costs at most
one embedding); a stack job stops after its current slice.
"""

import os
import subprocess
import sys
import textwrap

import pytest
from fakes import has_display

pytestmark = pytest.mark.skipif(not has_display(), reason="napari needs a display: run under xvfb-run (see dev.sh)")

PRELUDE = """
import sys, time
import numpy as np
import napari
from qtpy.QtCore import QTimer
from napari_sam.model.embedding import ImageEmbedding
import torch

class SlowEngine:
    name = model_id = "slow"
    precision = "fp32"
    precision_reason = "fp32 (chosen)"

    def prepare(self, embedding):
        pass
    def embed(self, plane, intensity_range=None):
        print("embed started", flush=True)
        time.sleep(1.5)  # a CPU embedding takes seconds
        print("embed finished", flush=True)
        H, W = np.asarray(plane).shape[:2]
        from napari_sam.model.image import to_uint8_rgb
        rule = to_uint8_rgb(plane, intensity_range).rule
        return ImageEmbedding(torch.zeros(1, 1, 1, 1), (H, W), (H, W), "slow", rule)
    def decode(self, embedding, request):
        raise AssertionError("no prompt is placed in this test")

viewer = napari.Viewer()
image = viewer.add_image(np.random.default_rng(0).random((6, 64, 64)).astype(np.float32))
"""


def run_napari(body: str, tmp_path) -> subprocess.CompletedProcess:
    script = tmp_path / "close_napari.py"
    script.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(body) + "\nnapari.run()\nprint('napari closed', flush=True)\n")
    env = dict(os.environ, NAPARI_SAM_CACHE_DIR=str(tmp_path / "cache"), PYTHONFAULTHANDLER="1")
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)


def check_clean_exit(proc: subprocess.CompletedProcess) -> None:
    report = f"exit code {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, report
    assert "has been deleted" not in proc.stderr, report
    assert "Fatal Python error" not in proc.stderr, report
    assert "napari closed" in proc.stdout, report


MAIN_JOB = """
import time
import napari
from qtpy.QtCore import QTimer
import napari_sam.__main__ as main_job
from napari_sam.widgets.annotator import AnnotatorWidget

made = []
init = AnnotatorWidget.__init__

def remember(self, *args, **kwargs):
    init(self, *args, **kwargs)
    made.append(self)

AnnotatorWidget.__init__ = remember
run = napari.run

def run_then_close():  # the user waits until the neighbours are prefetched, then closes the window
    viewer = napari.current_viewer()
    widget = made[0]
    started = time.monotonic()

    def close_when_prefetched():
        memory = widget.hub.workspace.embeddings.memory
        if (len(memory) >= 3 and widget.is_idle()) or time.monotonic() - started > 60:
            session = widget.session
            print(f"closing with {len(memory)} slices embedded", flush=True)
            viewer.close()
            print(f"embedding started by closing: {not session.is_idle()}", flush=True)
        else:
            QTimer.singleShot(100, close_when_prefetched)

    QTimer.singleShot(100, close_when_prefetched)
    run()

napari.run = run_then_close
main_job.main(["--device", "cpu"])
print("napari closed", flush=True)
"""


def test_closing_the_main_job_after_embedding_and_prefetching(tmp_path):
    # `python -m napari_sam` (the README's main job) with the demo model.
    script = tmp_path / "main_job.py"
    script.write_text(MAIN_JOB)
    env = dict(os.environ, NAPARI_SAM_CACHE_DIR=str(tmp_path / "cache"), PYTHONFAULTHANDLER="1")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    check_clean_exit(proc)
    assert "closing with" in proc.stdout and "closing with 0 " not in proc.stdout, proc.stdout
    # Closing removes every layer, which moves the slider: that must not start an
    # embedding that napari's exit would then have to wait for.
    assert "embedding started by closing: False" in proc.stdout, proc.stdout


def test_closing_napari_during_an_embedding(tmp_path):
    proc = run_napari(
        """
        from napari_sam.widgets.annotator import AnnotatorWidget
        widget = AnnotatorWidget(viewer, engine_factory=lambda *spec: SlowEngine(), autoload=False)
        viewer.window.add_dock_widget(widget, name="SAM Annotator")
        widget.set_image(image)
        widget.load_model("slow")
        QTimer.singleShot(800, viewer.close)  # while the first embedding runs
        """,
        tmp_path,
    )
    check_clean_exit(proc)
    assert proc.stdout.count("embed started") >= 1
    # Every embedding that started was allowed to end before the program did.
    assert proc.stdout.count("embed started") == proc.stdout.count("embed finished"), proc.stdout


def test_closing_napari_during_a_stack_embedding(tmp_path):
    proc = run_napari(
        """
        from napari_sam.widgets import volume as V

        real_embed_stack = V.embed_stack

        def embed_stack(*args, **kwargs):  # the real job, telling how it ended
            result = real_embed_stack(*args, **kwargs)
            print("stack job cancelled" if result.cancelled else "stack job completed", flush=True)
            return result

        V.embed_stack = embed_stack
        stack = viewer.add_image(np.random.default_rng(1).random((300, 64, 64)).astype(np.float32), name="long stack")
        widget = V.VolumeWidget(viewer, confirm_clear=False)
        viewer.window.add_dock_widget(widget, name="SAM Volume")
        widget.image_combo.setCurrentText("long stack")
        widget.load_model("demo")

        def embed_when_loaded():
            if widget.session.engine is None:
                QTimer.singleShot(100, embed_when_loaded)
            else:
                widget.embed()
                QTimer.singleShot(2500, viewer.close)  # 300 slices take far longer than that

        QTimer.singleShot(100, embed_when_loaded)
        """,
        tmp_path,
    )
    check_clean_exit(proc)
    # The job saw napari quit and stopped between two slices instead of running on.
    assert "stack job cancelled" in proc.stdout, proc.stdout
