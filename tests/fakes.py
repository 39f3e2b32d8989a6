"""Stand-ins shared by the session and widget tests: a fast, exact engine, a hand-driven event loop.

Also whether napari can draw here (``has_display``).
"""

import os
import queue
import sys
import threading
import time

import numpy as np
import torch

from napari_sam.model.embedding import ImageEmbedding

# Predicted IoU of the stub's three candidates: the third is the best.
STUB_IOU = (0.61, 0.72, 0.93)
STUB_RADII = (3, 6, 10)


class StubEngine:
    """Embeds a plane as its mean value; decodes discs of three radii around the first prompt.

    ``embed_calls`` records every encoder run (the plane's mean), so tests can
    count them; ``gate`` (a threading.Event) holds embeddings until it is set.
    """

    name = "stub"
    precision = "fp32"
    precision_reason = "fp32 (chosen)"

    def __init__(self, model_id="stub-model", delay=0.0, gate=None, fail=None):
        self.model_id = model_id
        self.delay = delay
        self.gate = gate
        self.fail = fail
        self.embed_calls = []  # plane means, in order
        self.decode_calls = []  # (embedding tag, request)
        self.prepared = []
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
        from napari_sam.model.image import to_uint8_rgb

        rule = to_uint8_rgb(plane, intensity_range).rule
        return ImageEmbedding(torch.full((1, 1, 1, 1), tag), (H, W), (H, W), self.model_id, rule)

    def prepare(self, embedding):
        self.prepared.append(float(embedding.features.flatten()[0]))

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


class StubFactory:
    """An engine factory (name, device, precision) -> engine that hands out one StubEngine per name."""

    def __init__(self, **engine_kwargs):
        self.engines = {}
        self.kwargs = engine_kwargs
        self.loads = []

    def __call__(self, name, device, precision):
        self.loads.append(name)
        if name.startswith("missing"):
            raise FileNotFoundError(f"no model called {name}")
        if name not in self.engines:
            self.engines[name] = StubEngine(model_id=f"stub-{name}", **self.kwargs)
        return self.engines[name]


class ManualLoop:
    """A ``post`` for sessions: callbacks wait in a queue until the test runs them on its own thread."""

    def __init__(self):
        self._queue = queue.Queue()

    def __call__(self, callback, value):
        self._queue.put((callback, value))

    def run_pending(self, wait: float = 0.0) -> int:
        n = 0
        while True:
            try:
                callback, value = self._queue.get(timeout=wait) if wait else self._queue.get_nowait()
            except queue.Empty:
                return n
            callback(value)
            n += 1
            wait = 0.0

    def run_until(self, condition, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError("the condition was not met in time")
            self.run_pending(wait=0.01)


def has_display() -> bool:
    """napari's canvas needs a real (or virtual, Xvfb) display; Qt aborts the process without one."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True
