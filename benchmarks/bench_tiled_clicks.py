"""Clicks in the annotator on a plane larger than twice the model's input: by tiles against the whole plane.

One generated uint16 plane of nuclei (``--size`` square, default 3000: 12x the
demo model's 256 px input) is opened in an :class:`AnnotationSession` twice,
in the same process:

* reference: the whole-plane path the annotator took before tiles (the plane
  embedded once, shrunk to the model's input, masks decoded at full size);
* tiles: the annotator's path now (the plane's contrast measured band by
  band, each click embedding only the tiles it needs).

Both get the same ``--clicks`` clicks, one at the centre of each of that many
true nuclei (spread over the plane). Printed: the time until the first click
can be decoded, the time per click, encoder runs, and the IoU of the selected
candidate with the true nucleus; ratios are tiles / reference.

    python benchmarks/bench_tiled_clicks.py --size 3000 --clicks 20
"""

import argparse
import queue
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import cpu_summary, load_average  # noqa: E402


class Loop:
    """The session's ``post``: callbacks run on this thread when the script waits for them."""

    def __init__(self):
        self.queue = queue.Queue()

    def __call__(self, callback, value):
        self.queue.put((callback, value))

    def until(self, condition, timeout=600.0):
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise TimeoutError("the session did not finish in time")
            try:
                callback, value = self.queue.get(timeout=0.01)
            except queue.Empty:
                continue
            callback(value)


def clicks_on(truth, n, seed=0):
    """(x, y, label) at the centres of ``n`` true nuclei chosen at random over the plane."""
    rng = np.random.default_rng(seed)
    out = []
    for label in rng.permutation(np.unique(truth[truth > 0])):
        ys, xs = np.nonzero(truth == label)
        y, x = int(round(ys.mean())), int(round(xs.mean()))
        if truth[y, x] == label:
            out.append((x, y, int(label)))
        if len(out) == n:
            return out
    return out


def iou_with(truth, label, cands):
    obj = truth == label
    mask = np.zeros(truth.shape, bool)
    if cands.offset is None:
        mask = cands.mask
    else:
        (y, x), (h, w) = cands.offset, cands.mask.shape
        mask[y:y + h, x:x + w] = cands.mask
    return float((obj & mask).sum() / max((obj | mask).sum(), 1))


def run(image, truth, engine, clicks, tiled: bool):
    from napari_sam.embeddings import EmbeddingSource
    from napari_sam.prompts import Prompt
    from napari_sam.session import AnnotationSession, ImagePlanes, Workspace
    from napari_sam.session import session as session_module

    original = session_module.needs_tiles
    if not tiled:
        session_module.needs_tiles = lambda planes, engine: False  # the path before tiles
    try:
        loop, source = Loop(), EmbeddingSource()
        session = AnnotationSession(ImagePlanes(image), Workspace(embeddings=source), loop, prefetch=False)
        t0 = time.perf_counter()
        session.set_engine(engine)
        session.show_slice(())
        loop.until(lambda: session.embedding_ready and session.is_idle())
        ready_s = time.perf_counter() - t0
        times, ious = [], []
        for x, y, label in clicks:
            t0 = time.perf_counter()
            session.set_prompt((), Prompt.make([[x + 0.5, y + 0.5]], [1]))
            loop.until(lambda: session.candidates() is not None and session.is_idle())
            times.append(time.perf_counter() - t0)
            ious.append(iou_with(truth, label, session.candidates()))
            session.clear()
        session.close()
        return {"ready_s": ready_s, "click_s": float(np.median(times)), "first_click_s": times[0],
                "encoder_calls": source.encoder_calls, "iou": float(np.mean(ious))}
    finally:
        session_module.needs_tiles = original


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=3000)
    parser.add_argument("--clicks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from napari_sam.model import load_model
    from napari_sam.session import SamEngine
    from napari_sam.synthetic import make_nuclei_2d

    torch.set_num_threads(args.threads)
    print(cpu_summary())
    print(f"load average before: {load_average()}; torch threads: {args.threads}")
    n = max(1, args.size * args.size // 12000)
    image, truth = make_nuclei_2d((args.size, args.size), n_objects=(n, n), seed=5, radius_range=(6.0, 14.0),
                                  dtype=np.uint16)
    clicks = clicks_on(truth, args.clicks)
    engine = SamEngine(load_model("demo"))
    print(f"plane {args.size} x {args.size} uint16, {len(np.unique(truth)) - 1} nuclei, {len(clicks)} clicks, "
          f"demo model ({engine.precision})")
    ref = run(image, truth, engine, clicks, tiled=False)
    new = run(image, truth, engine, clicks, tiled=True)
    for name, r in (("whole plane (reference)", ref), ("tiles", new)):
        print(f"{name:24s} ready {r['ready_s']:6.2f} s | first click {r['first_click_s']:6.3f} s | median click "
              f"{r['click_s']:6.3f} s | encoder runs {r['encoder_calls']:3d} | mean IoU {r['iou']:.3f}")
    print(f"ratios tiles / reference: ready {new['ready_s'] / ref['ready_s']:.2f}, median click "
          f"{new['click_s'] / ref['click_s']:.2f}; mean IoU {ref['iou']:.3f} -> {new['iou']:.3f}")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
