"""Does napari stay responsive while the SAM Annotator works, and how fast do candidates appear?

A napari viewer with a 3D stack and the SAM Annotator docked; the user's
actions are real Qt mouse events on napari's canvas and real steps of the z
slider. A 10 ms QTimer runs throughout: how late its firings come is the
event loop's longest gap (the time napari could not repaint or react).

Scenarios, in this order:

1. first slice: load the model and embed the slice shown (the decoder's
   warm-up included): longest gap, embedding time in the background worker
   against the same call in a plain script;
2. slider: step z through slices whose embeddings are cached, then through
   slices that are not (their embeddings start in the background): the
   longest gap per step;
3. first click on a slice just stepped to (cached), then clicks on an embedded
   slice: click -> candidates on screen (the next canvas draw after the
   candidate layers changed);
4. box drags: press, move, release with the rectangle tool -> candidates;
5. clicks while a neighbouring slice embeds in the background.

Targets: no event-loop gap over 100 ms, click -> candidates median under 100 ms.
Random weights (timing does not depend on them). The CPU model and its flags
are printed: figures differ between machines with and without AVX512-BF16.
Needs a display (``xvfb-run -a`` on a headless machine)::

    xvfb-run -a python benchmarks/bench_responsiveness.py [--model vit_b] [--size 512] [--clicks 10]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np
import torch

from _machine import cpu_summary, load_average  # benchmarks/_machine.py


class TimedEngine:
    """Wraps an engine to record how long each embedding and each decode takes."""

    def __init__(self, engine):
        self.engine = engine
        self.embed_times: list[float] = []
        self.decode_times: list[float] = []

    def __getattr__(self, name):  # model_id, name, precision ... of the wrapped engine
        return getattr(self.engine, name)

    def embed(self, plane, intensity_range=None):
        start = time.perf_counter()
        out = self.engine.embed(plane, intensity_range)
        self.embed_times.append(time.perf_counter() - start)
        return out

    def decode(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.engine.decode(*args, **kwargs)
        self.decode_times.append(time.perf_counter() - start)
        return out


class GapMonitor:
    """A 10 ms QTimer; how late each firing comes is a gap of the event loop."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.late: list[float] = []
        self._last = None

    def _tick(self):
        now = time.perf_counter()
        if self._last is not None:
            self.late.append(max(0.0, now - self._last - self.interval))
        self._last = now

    def start(self):
        self.timer.start()

    def mark(self) -> int:
        return len(self.late)

    def worst_since(self, mark: int) -> float:
        return max(self.late[mark:], default=0.0)


class Drawn:
    """Records when napari's canvas finished drawing, to time what the user sees."""

    def __init__(self, viewer):
        self.times: list[float] = []
        viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(self._on_draw, position="last")

    def _on_draw(self, event=None):
        self.times.append(time.perf_counter())

    def first_after(self, t: float):
        return next((d for d in self.times if d >= t), None)


def pump(app, seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def until(app, condition, timeout_s: float = 900.0) -> float:
    start = time.perf_counter()
    while not condition():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() - start > timeout_s:
            raise TimeoutError("benchmark step took too long")
    return time.perf_counter() - start


class Scene:
    """The viewer, the widget and the user's mouse."""

    def __init__(self, args):
        import napari
        from qtpy.QtWidgets import QApplication

        from napari_sam.model.build import build_sam
        from napari_sam.widgets.annotator import AnnotatorWidget

        try:
            from napari_sam.session import SamEngine
        except ImportError:  # the widget before the session existed (for before/after runs)
            from napari_sam.widgets.engine import SamEngine

        self.napari = napari
        self.size = args.size
        self.engine = TimedEngine(SamEngine(build_sam(args.model), device="cpu", precision=args.precision))
        rng = np.random.default_rng(0)
        self.stack = rng.integers(0, 4000, (args.slices, args.size, args.size)).astype(np.uint16)
        self.viewer = napari.Viewer(show=True)
        self.viewer.window._qt_window.resize(1250, 1000)
        self.image = self.viewer.add_image(self.stack, name="bench")
        self.app = QApplication.instance()
        self.widget = AnnotatorWidget(self.viewer, engine_factory=lambda *a: self.engine, autoload=False)
        self.viewer.window.add_dock_widget(self.widget, name="SAM Annotator")
        pump(self.app, 2.0)  # napari's start-up: first paint, dock layout
        self.viewer.reset_view()
        self.drawn = Drawn(self.viewer)
        self.renamed: list[float] = []  # when a candidate layer was renamed (see _seen)
        self._watched: list = []
        self.gaps = GapMonitor()
        self.gaps.start()

    # --- what differs between versions of the widget is looked up here only
    def set_prefetch(self, on: bool) -> None:
        """Prefetching of neighbours on or off (once the widget has its image)."""
        if hasattr(self.widget, "session"):
            self.widget.session.prefetch_enabled = on
        else:
            self.widget.prefetch_enabled = on

    def prefetching(self) -> bool:
        """A neighbour of the slice shown is being embedded in the background now."""
        if hasattr(self.widget, "session"):
            running = self.widget.session._embeddings.lane.running
            return running is not None and not running.user_waits
        running = self.widget.embedder.running
        return running is not None and running.prefetch

    def layer(self, name: str):
        return next(lyr for lyr in self.viewer.layers if lyr.name == name)

    def candidates_shown(self) -> bool:
        return any("IoU" in lyr.name for lyr in self.viewer.layers if lyr.name.startswith("SAM candidate"))

    def z(self) -> int:
        return int(self.viewer.dims.current_step[0])

    # --- the user's actions
    def _canvas_point(self, y: float, x: float):
        from qtpy.QtCore import QPoint

        canvas = self.viewer.window._qt_viewer.canvas
        sy, sx = self.image.scale[-2:]
        p = (canvas.view.transform * canvas.view.scene.transform).map([x * sx, y * sy])
        return QPoint(int(round(p[0])), int(round(p[1])))

    def _native(self):
        return self.viewer.window._qt_viewer.canvas.native

    def click(self, y: float, x: float) -> float:
        """A left click on "SAM points" in add mode; returns seconds until the candidates were drawn."""
        from qtpy.QtCore import Qt
        from qtpy.QtTest import QTest

        points = self.layer("SAM points")
        self.viewer.layers.selection.active = points
        points.mode = "add"
        self.clear_candidates()
        self.watch_candidates()
        before = len(points.data)
        start = time.perf_counter()
        QTest.mouseClick(self._native(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, self._canvas_point(y, x))
        return self._seen(start, lambda: len(points.data) > before)

    def drag_box(self, y0, x0, y1, x1) -> float:
        """A rectangle dragged on "SAM boxes"; returns seconds from the mouse release until drawn."""
        from qtpy.QtCore import Qt
        from qtpy.QtTest import QTest

        boxes = self.layer("SAM boxes")
        self.viewer.layers.selection.active = boxes
        boxes.mode = "add_rectangle"
        pump(self.app, 0.1)
        self.clear_candidates()
        self.watch_candidates()
        native, none = self._native(), Qt.KeyboardModifier.NoModifier
        a, b = self._canvas_point(y0, x0), self._canvas_point(y1, x1)
        QTest.mousePress(native, Qt.MouseButton.LeftButton, none, a)
        for k in range(1, 9):
            QTest.mouseMove(native, a + (b - a) * (k / 8))
            self.app.processEvents()
            time.sleep(0.015)
        start = time.perf_counter()
        QTest.mouseRelease(native, Qt.MouseButton.LeftButton, none, b)
        return self._seen(start, lambda: True)

    def _seen(self, start: float, placed) -> float:
        until(self.app, lambda: placed() and self.candidates_shown(), timeout_s=60)
        # The first draw after the candidate layers were renamed (their names carry the IoU) shows them.
        # Not "after the loop saw them": napari may draw within the same processEvents call, and then
        # no later draw comes while nothing changes.
        shown = max((t for t in self.renamed if t >= start), default=time.perf_counter())
        until(self.app, lambda: self.drawn.first_after(shown) is not None, timeout_s=10)
        return self.drawn.first_after(shown) - start

    def watch_candidates(self) -> None:
        """Record when a candidate layer is renamed (once the widget has made its layers)."""
        for lyr in self.viewer.layers:
            if lyr.name.startswith("SAM candidate") and lyr not in self._watched:
                lyr.events.name.connect(lambda event: self.renamed.append(time.perf_counter()))
                self._watched.append(lyr)

    def clear_candidates(self) -> None:
        self.widget.clear()
        pump(self.app, 0.05)

    def step_to(self, z: int) -> None:
        self.viewer.dims.set_current_step(0, z)


def ms(v: float) -> str:
    return f"{1000 * v:.0f} ms"


def spread(values) -> str:
    return f"median {ms(statistics.median(values))}, max {ms(max(values))} ({len(values)})"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", help="architecture preset (random weights): vit_b, vit_t, ...")
    parser.add_argument("--size", type=int, default=512, help="side of the test planes in pixels")
    parser.add_argument("--slices", type=int, default=16, help="slices of the test stack (at least 12)")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "int8"])
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    scene = Scene(args)
    app, widget, gaps, S = scene.app, scene.widget, scene.gaps, args.size
    print(cpu_summary())
    print(f"load average {load_average()}; model {args.model} (random weights, precision {args.precision}), "
          f"stack {args.slices}x{S}x{S} uint16, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"napari {scene.napari.__version__}")
    rng = np.random.default_rng(1)
    results = {}

    # 1. the first slice: model, embedding (background), decoder warm-up
    scene.step_to(0)
    pump(app, 0.2)
    mark = gaps.mark()
    widget.set_image(scene.image)
    scene.set_prefetch(False)  # the slices are embedded one by one below; prefetching is scenario 5
    widget.load_model("bench")
    until(app, lambda: len(scene.engine.embed_times) >= 1 and widget.is_idle())
    pump(app, 0.5)
    results["first slice"] = gaps.worst_since(mark)
    worker_time = scene.engine.embed_times[0]
    plain = []
    for _ in range(2):
        start = time.perf_counter()
        scene.engine.engine.embed(scene.stack[0])
        plain.append(time.perf_counter() - start)

    # 2. the slider: cached slices first (embedded here, one after the other), then new ones
    half = args.slices // 2
    for z in range(1, half):
        scene.step_to(z)
        until(app, lambda: len(scene.engine.embed_times) >= z + 1 and widget.is_idle())
    worker_times = scene.engine.embed_times[1:]
    cached_steps = []
    for z in list(range(half - 1, -1, -1)) + list(range(1, half)):
        mark = gaps.mark()
        scene.step_to(z)
        pump(app, 0.25)
        cached_steps.append(gaps.worst_since(mark))
    new_steps = []
    for z in range(half, half + 3):
        mark = gaps.mark()
        scene.step_to(z)
        pump(app, 0.25)
        new_steps.append(gaps.worst_since(mark))
    mark = gaps.mark()
    until(app, widget.is_idle)
    embedding_gap = gaps.worst_since(mark)

    # 3. first click on a slice just stepped to, then clicks on it
    first_clicks, clicks = [], []
    for z in (1, 2, 3):
        scene.step_to(z)
        pump(app, 0.3)
        y, x = rng.uniform(0.2, 0.8, 2) * S
        first_clicks.append(scene.click(y, x))
    scene.engine.decode_times.clear()
    mark = gaps.mark()
    for _ in range(args.clicks):
        y, x = rng.uniform(0.1, 0.9, 2) * S
        clicks.append(scene.click(y, x))
    decode = list(scene.engine.decode_times)
    click_gap = gaps.worst_since(mark)

    # 4. box drags
    boxes = []
    mark = gaps.mark()
    for _ in range(5):
        y0, x0 = rng.uniform(0.1, 0.5, 2) * S
        h, w = rng.uniform(0.15, 0.4, 2) * S
        boxes.append(scene.drag_box(y0, x0, y0 + h, x0 + w))
    box_gap = gaps.worst_since(mark)
    scene.clear_candidates()

    # 5. clicks while a neighbour embeds: a slice far from the ones embedded so far, then its prefetch
    scene.set_prefetch(True)
    busy_clicks, during = [], []
    far = args.slices - 3
    scene.step_to(far)
    n_embedded = len(scene.engine.embed_times)
    until(app, lambda: len(scene.engine.embed_times) > n_embedded and widget.is_idle())
    n_embedded = len(scene.engine.embed_times)
    until(app, scene.prefetching, timeout_s=30)  # the pause is over: a neighbour is prefetched
    mark = gaps.mark()
    for _ in range(args.clicks):
        y, x = rng.uniform(0.1, 0.9, 2) * S
        during.append(scene.prefetching())
        busy_clicks.append(scene.click(y, x))
    busy_gap = gaps.worst_since(mark)
    until(app, widget.is_idle)
    scene.set_prefetch(False)

    print(f"\n1. first slice (load, embed in the background, warm-up): longest gap {ms(results['first slice'])}")
    print(f"   embedding in the worker: {ms(worker_time)} first, then {spread(worker_times)}; "
          f"the same call in a plain script: best {ms(min(plain))} "
          f"(worker {100 * (statistics.median(worker_times) / min(plain) - 1):+.1f} %, median vs best)")
    print(f"2. slider, cached slices: longest gap per step {spread(cached_steps)}")
    print(f"   slider, slices not embedded yet: longest gap per step {spread(new_steps)}; while they embedded: "
          f"{ms(embedding_gap)}")
    print(f"3. first click on a slice just shown: {', '.join(ms(v) for v in first_clicks)}")
    print(f"   click -> candidates drawn: {spread(clicks)}; decoder {spread(decode)}; longest gap {ms(click_gap)}")
    print(f"4. box drag, release -> candidates drawn: {spread(boxes)}; longest gap {ms(box_gap)}")
    print(f"5. clicks while a neighbour embeds ({sum(during)} of {len(during)} with the embedding running, "
          f"{len(scene.engine.embed_times) - n_embedded} embedded meanwhile): {spread(busy_clicks)}; "
          f"longest gap {ms(busy_gap)}")
    all_gaps = [results["first slice"], *cached_steps, *new_steps, embedding_gap, click_gap, box_gap, busy_gap]
    all_clicks = first_clicks + clicks + boxes + busy_clicks
    print(f"\ntargets: no gap over 100 ms: {'met' if max(all_gaps) <= 0.1 else 'MISSED'} (worst {ms(max(all_gaps))}); "
          f"click median under 100 ms: {'met' if statistics.median(all_clicks) < 0.1 else 'MISSED'} "
          f"(median {ms(statistics.median(all_clicks))} over all {len(all_clicks)} clicks and boxes)")
    widget.shutdown()
    until(app, widget.is_idle)
    scene.viewer.close()


if __name__ == "__main__":
    main()
