"""Stand-ins for the SAM engine, so widget tests check UI logic quickly and exactly."""

import os
import sys
import threading
import time

import numpy as np
import pytest
import torch

from napari_sam.model.embedding import ImageEmbedding

# Predicted IoU of the stub's three candidates: the third is the best.
STUB_IOU = (0.61, 0.72, 0.93)
STUB_RADII = (3, 6, 10)


class StubEngine:
    """Embeds a plane as its mean value; decodes discs of three radii around the first prompt."""

    name = "stub"

    def __init__(self, model_id="stub-model", delay=0.0, gate=None, fail=None):
        self.model_id = model_id
        self.delay = delay
        self.gate = gate
        self.fail = fail
        self.embed_calls = []  # plane means, in order
        self.decode_calls = []  # (embedding tag, request)
        self.lock = threading.Lock()

    def embed(self, plane, intensity_range=None):
        if self.gate is not None:
            assert self.gate.wait(timeout=20), "test gate never opened"
        if self.delay:
            time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        tag = float(np.asarray(plane, dtype=float).mean())
        with self.lock:
            self.embed_calls.append(tag)
        H, W = np.asarray(plane).shape[:2]
        return ImageEmbedding(torch.full((1, 1, 1, 1), tag), (H, W), (H, W), self.model_id, f"stub:{intensity_range}")

    def decode(self, embedding, request):
        self.decode_calls.append((float(embedding.features.flatten()[0]), request))
        H, W = embedding.original_size
        if request.point_coords is not None:
            cx, cy = request.point_coords[0]
        elif request.box is not None:
            x0, y0, x1, y1 = request.box
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        else:
            cx, cy = W / 2, H / 2
        yy, xx = np.mgrid[:H, :W]
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        masks = np.stack([d2 <= r * r for r in STUB_RADII])
        low = np.stack([np.full((8, 8), float(r), np.float32) for r in STUB_RADII])
        return masks, np.array(STUB_IOU), low

    def mask_prompt(self, mask):
        return np.full((1, 8, 8), 5.0, np.float32)


@pytest.fixture
def stub_factory():
    """An engine factory for AnnotatorWidget that hands out one shared StubEngine per model name."""
    engines = {}

    def factory(name, device, precision):
        if name not in engines:
            engines[name] = StubEngine(model_id=f"stub-{name}")
        return engines[name]

    factory.engines = engines
    return factory


def has_display() -> bool:
    """napari's canvas needs a real (or virtual, Xvfb) display; Qt aborts the process without one."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def pytest_collection_modifyitems(config, items):
    # Skipped at collection: setting up a Qt fixture without a display would abort the whole run.
    if has_display():
        return
    skip = pytest.mark.skip(reason="napari viewer tests need a display: run them under xvfb-run (see dev.sh)")
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here) and "make_napari_viewer" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _settle_annotators(request, monkeypatch):
    """Let every annotator finish its background work before napari closes its viewer."""
    if "make_napari_viewer" not in request.fixturenames:
        yield
        return
    # Requested here so that this fixture's clean-up runs before the viewer is closed.
    request.getfixturevalue("make_napari_viewer")
    qtbot = request.getfixturevalue("qtbot")
    from napari_sam.widgets.annotator import AnnotatorWidget

    made = []
    original = AnnotatorWidget.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(AnnotatorWidget, "__init__", init)
    yield
    for widget in made:
        widget.shutdown()
        qtbot.waitUntil(widget.is_idle, timeout=20000)
