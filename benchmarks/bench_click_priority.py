"""How long a click takes while another slice embeds beside it, with and without clicks first.

No napari: the session's engine (``SamEngine``) in one process. A background
thread embeds planes one after another, at the lower CPU priority the
session gives it; the main thread clicks every ``--gap`` seconds and times
prompt -> 3 masks. Three ways, interleaved round by round:

* ``idle``: nothing embeds (the floor);
* ``beside``: the click is decoded without holding the encoder's gate, so the
  embedding runs on beside it (how clicks were decoded before);
* ``first``: ``SamEngine.decode`` holds the gate and the embedding pauses at
  its next layer (model/foreground.py).

Random weights (timing does not depend on them). Prints the CPU model and
flags and the medians; the ratio beside/first is the gain.

    python benchmarks/bench_click_priority.py [--model vit_b] [--clicks 12] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np
import torch

from _machine import cpu_summary, load_average  # benchmarks/_machine.py
from napari_sam.model.build import build_sam
from napari_sam.prompts import DecodeRequest
from napari_sam.session import SamEngine
from napari_sam.session.work import lower_priority


def clicks(engine, embedding, n, gap, hold):
    rng = np.random.default_rng(0)
    H, W = embedding.original_size
    times = []
    for _ in range(n):
        time.sleep(gap)
        request = DecodeRequest((), rng.uniform(0, [W, H], (1, 2)), np.ones(1), None, None)
        start = time.perf_counter()
        if hold:
            engine.decode(embedding, request)
        else:
            engine._use(embedding)
            engine.decoder.predict(**request.predict_kwargs())
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--clicks", type=int, default=12)
    parser.add_argument("--gap", type=float, default=0.15, help="seconds between clicks")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    print(cpu_summary())
    torch.manual_seed(0)
    engine = SamEngine(build_sam(args.model), device="cpu", precision=args.precision)
    print(f"{load_average()}; model {args.model} (random weights), {engine.precision_reason}")
    plane = np.random.default_rng(1).integers(0, 4000, (args.size, args.size)).astype(np.uint16)
    embedding = engine.embed(plane)
    engine.prepare(embedding)
    stop = threading.Event()
    embedded = []

    def embed_forever():
        lower_priority()  # as the session's embed lane does
        while not stop.is_set():
            engine.embed(plane + len(embedded))
            embedded.append(1)

    results = {"idle": [], "beside": [], "first": []}
    for _ in range(args.rounds):
        results["idle"] += clicks(engine, embedding, args.clicks, args.gap, hold=True)
        stop.clear()
        worker = threading.Thread(target=embed_forever)
        worker.start()
        time.sleep(1.0)  # the embedding is under way
        for way in ("beside", "first"):
            results[way] += clicks(engine, embedding, args.clicks, args.gap, hold=way == "first")
        stop.set()
        worker.join()
    print(f"embeddings finished beside the clicks: {len(embedded)}")
    for way, times in results.items():
        ms = [t * 1000 for t in times]
        print(f"{way:7s}: click -> 3 masks median {statistics.median(ms):6.1f} ms, max {max(ms):6.1f} ms ({len(ms)})")
    gain = statistics.median(results["beside"]) / statistics.median(results["first"])
    print(f"clicks while a slice embeds: beside / first = {gain:.2f}x; "
          f"first / idle = {statistics.median(results['first']) / statistics.median(results['idle']):.2f}x")


if __name__ == "__main__":
    main()
