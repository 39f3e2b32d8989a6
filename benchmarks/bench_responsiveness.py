"""Does napari stay responsive while SAM embeds, and is the background worker as fast as a plain call?

Measures, with a napari viewer open and the SAM Annotator docked:

1. embedding time of one plane in a plain call on the main thread (napari idle);
2. the same embedding in the annotator's background worker (napari thread
   worker), and the longest stall of Qt's event loop meanwhile: a 10 ms QTimer
   records how late each firing comes;
3. the same in a worker that does NOT copy the main thread's torch settings
   (what a naive thread worker does), to show whether that matters here;
4. prompt-to-candidates latency: from adding a point to the candidate layers
   updated, once the slice is embedded (decode + display + one event-loop pass).

Targets: stall <= 100 ms, worker within 10 % of the plain call, candidates
within 100 ms. Random weights are used (timing does not depend on them).
Needs a display (run under ``xvfb-run -a`` on a headless machine):

    xvfb-run -a python benchmarks/bench_responsiveness.py [--model vit_b] [--repeats 2] [--clicks 10]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np
import torch


class TimedEngine:
    """Wraps an engine to record how long each embedding takes and in which torch setting."""

    def __init__(self, engine):
        self.engine = engine
        self.model_id = engine.model_id
        self.name = engine.name
        self.records = []  # (seconds, torch threads, grad enabled, thread name)

    def embed(self, plane, intensity_range=None):
        start = time.perf_counter()
        out = self.engine.embed(plane, intensity_range)
        self.records.append(
            (time.perf_counter() - start, torch.get_num_threads(), torch.is_grad_enabled(), threading.current_thread().name)
        )
        return out

    def decode(self, embedding, request):
        return self.engine.decode(embedding, request)

    def mask_prompt(self, mask):
        return self.engine.mask_prompt(mask)


class StallMonitor:
    """A 10 ms QTimer; the worst lateness of its firings is the longest event-loop stall."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.late = []
        self._last = None

    def _tick(self):
        now = time.perf_counter()
        if self._last is not None:
            self.late.append(max(0.0, now - self._last - self.interval))
        self._last = now

    def start(self):
        self.late.clear()
        self._last = None
        self.timer.start()

    def stop(self):
        self.timer.stop()
        return max(self.late, default=0.0)


def wait(app, condition, timeout_s=900):
    end = time.perf_counter() + timeout_s
    while not condition():
        app.processEvents()
        time.sleep(0.001)
        if time.perf_counter() > end:
            raise TimeoutError("benchmark step took too long")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", help="architecture preset (random weights): vit_b, vit_t, ...")
    parser.add_argument("--size", type=int, default=512, help="side of the test image in pixels")
    parser.add_argument("--repeats", type=int, default=2, help="embeddings per variant")
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads for the main thread (0 = torch's default)")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_sam.embedding_cache import EmbeddingKey
    from napari_sam.model.build import build_sam
    from napari_sam.widgets.annotator import AnnotatorWidget
    from napari_sam.widgets.background import EmbedJob
    from napari_sam.widgets.engine import SamEngine

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = TimedEngine(SamEngine(build_sam(args.model), device="cpu", precision="fp32"))
    image = np.random.default_rng(0).integers(0, 4000, (3, args.size, args.size)).astype(np.uint16)

    viewer = napari.Viewer(show=True)
    layer = viewer.add_image(image, name="bench")
    widget = AnnotatorWidget(viewer, engine_factory=lambda *a: engine, autoload=False)
    viewer.window.add_dock_widget(widget, name="SAM Annotator")
    app = QApplication.instance()
    wait(app, lambda: True)
    print(f"model {args.model} (random weights), image {args.size}x{args.size}, torch {torch.__version__}, "
          f"napari {napari.__version__}, main-thread torch threads {torch.get_num_threads()}")

    # Warm-up (first call allocates, loads kernels).
    engine.embed(image[0])
    engine.records.clear()

    # 1. plain calls on the main thread
    plain = []
    for _ in range(args.repeats):
        engine.embed(image[0])
        plain.append(engine.records[-1][0])

    # 2./3. background worker, with and without copying the main thread's torch settings
    monitor = StallMonitor()
    results = {}
    for variant, threads in (("worker", widget.embedder.num_threads), ("worker, torch settings not copied", 0)):
        times, stalls, info = [], [], None
        widget.embedder.num_threads = threads
        for r in range(args.repeats):
            widget.cache.clear()
            key = EmbeddingKey(f"bench-{variant}-{r}", (0,), engine.model_id, "bench")
            monitor.start()
            widget.embedder.submit(EmbedJob(key, engine, image[0], None, label="benchmark"))
            wait(app, lambda: key in widget.cache and not widget.embedder.is_busy)
            stalls.append(monitor.stop())
            times.append(engine.records[-1][0])
            info = engine.records[-1][1:]
        results[variant] = (times, stalls, info)

    # 4. prompt-to-candidates latency on an embedded slice
    widget.embedder.num_threads = torch.get_num_threads()
    widget.prefetch_enabled = False  # measure clicks on an embedded slice, with nothing else running
    widget.set_image(layer)
    widget.load_model("bench")
    wait(app, lambda: widget.engine is not None and widget._current_key in widget.cache)
    widget.embedder.cancel()
    wait(app, widget.is_idle)
    z = widget.current_slice()[0]
    rng = np.random.default_rng(1)
    latencies = []
    for i in range(args.clicks):
        if i % 3 == 0:
            widget.clear()
        y, x = rng.uniform(0.1, 0.9, 2) * args.size
        start = time.perf_counter()
        widget.points.add([z, y, x])
        app.processEvents()
        latencies.append(time.perf_counter() - start)
        assert widget.current_candidates() is not None

    def ms(v):
        return f"{1000 * v:7.0f} ms"

    base = min(plain)
    print(f"\nplain call (main thread):           best {ms(base)}  all {[round(t, 2) for t in plain]} s")
    for variant, (times, stalls, info) in results.items():
        ratio = min(times) / base
        print(
            f"{variant + ':':35s} best {ms(min(times))}  ({100 * (ratio - 1):+.1f} % vs plain; torch threads in worker "
            f"{info[0]}, grad {info[1]})  longest event-loop stall {ms(max(stalls))}"
            f"  (per run: {', '.join(ms(v).strip() for v in stalls)})"
        )
    print(
        f"prompt -> candidates on screen:     median {ms(statistics.median(latencies))}  max {ms(max(latencies))} "
        f"over {len(latencies)} clicks"
    )
    times, stalls, _ = results["worker"]
    print(
        "\ntargets: stall <= 100 ms: {}; worker within 10 % of plain: {}; candidates within 100 ms: {}".format(
            "met" if max(stalls) <= 0.1 else "MISSED",
            "met" if min(times) <= 1.1 * base else "MISSED",
            "met" if max(latencies) <= 0.1 else "MISSED",
        )
    )
    widget.shutdown()
    wait(app, widget.is_idle)
    viewer.close()


if __name__ == "__main__":
    main()
