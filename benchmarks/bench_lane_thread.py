"""What a click's decode costs where it runs: inline, in a new thread per decode, or in a lane's lasting worker.

No napari: the session's engine (``SamEngine``) and its ``Lane`` in one
process. Each way decodes the same clicks on one cached embedding, round by
round, interleaved; a lane used to start a new thread for every job, and a
new thread makes its compute threads and buffers anew. With ``--beside`` a
background thread embeds planes meanwhile, at the session's lower priority.

Random weights (timing does not depend on them). Prints the CPU model and
flags, and the median per way with its ratio to inline.

    python benchmarks/bench_lane_thread.py [--model vit_b] [--size 512] [--clicks 10] [--rounds 3] [--beside]
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
from napari_sam.session import Job, Lane, SamEngine
from napari_sam.session.work import lower_priority, post_directly


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", help="architecture preset (random weights)")
    parser.add_argument("--size", type=int, default=512, help="side of the test plane in pixels")
    parser.add_argument("--clicks", type=int, default=10, help="decodes per way and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--beside", action="store_true", help="embed planes in the background meanwhile")
    args = parser.parse_args(argv)

    engine = SamEngine(build_sam(args.model), device="cpu", precision="auto")
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 4000, (args.size, args.size)).astype(np.uint16)
    embedding = engine.embed(plane)
    print(cpu_summary())
    print(f"load average {load_average()}; model {args.model} (random weights, {engine.precision}), "
          f"{args.size} px, torch {torch.__version__} ({torch.get_num_threads()} threads)"
          f"{', an embedding running beside' if args.beside else ''}")

    def one() -> float:
        y, x = rng.uniform(0.1, 0.9, 2) * args.size
        start = time.perf_counter()
        engine.decode(embedding, DecodeRequest((0,), np.array([[x, y]]), np.array([1]), None, None))
        return time.perf_counter() - start

    def new_thread() -> float:
        out = []
        thread = threading.Thread(target=lambda: out.append(one()))
        thread.start()
        thread.join()
        return out[0]

    lane = Lane("bench", post_directly)

    def in_lane() -> float:
        out = []
        lane.submit(Job(one, done=out.append))
        while not out:
            time.sleep(0.0005)
        return out[0]

    stop = threading.Event()

    def embed_beside() -> None:
        lower_priority()
        background = engine.new_predictor()  # its own predictor, as "Embed stack" takes
        while not stop.is_set():
            background.set_image(plane)

    beside = threading.Thread(target=embed_beside) if args.beside else None
    if beside is not None:
        beside.start()
        time.sleep(1.0)
    ways = {"inline": one, "new thread per decode": new_thread, "lane's lasting worker": in_lane}
    for fn in ways.values():  # warm-up
        fn()
    times = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, fn in ways.items():
            times[name] += [fn() for _ in range(args.clicks)]
    stop.set()
    lane.close()
    if beside is not None:
        beside.join()  # its embedding finishes: no thread left inside torch at exit
    inline = statistics.median(times["inline"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:>24}: median {1000 * median:.1f} ms, min {1000 * min(values):.1f} ms "
              f"({median / inline:.2f}x inline; {len(values)} decodes)")


if __name__ == "__main__":
    main()
