"""Where segment everything's time goes: the decoder against finishing the candidates, op by op.

vit_b (or ``--model``) with random weights on a generated 1024 x 1024 image:
``--prompts`` grid points decoded as the generator decodes them
(``predict_batch``), then steps 3-6 of napari_sam.auto.decode (upsample,
stability, box, run lengths) on their candidates, each timed and profiled
(torch.profiler, the ops that took most of the time).

    python benchmarks/bench_auto_split.py --prompts 16
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
from _machine import cpu_summary, load_average  # noqa: E402
from helpers import randomize_, structured_rgb  # noqa: E402

from napari_sam.auto import decode  # noqa: E402
from napari_sam.auto.grid import layer_point_grids  # noqa: E402
from napari_sam.model.build import build_sam  # noqa: E402
from napari_sam.model.predictor import SamPredictor  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vit_b")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rows", type=int, default=12, help="ops listed per profile")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = randomize_(build_sam(args.model), seed=1).eval()
    predictor = SamPredictor(model, precision="fp32")
    emb = predictor.set_image(structured_rgb(1024, 1024, seed=3))
    print(f"{cpu_summary()}; torch threads {args.threads}; load {load_average()}")
    n = args.prompts
    points = layer_point_grids(16, 0, 1)[0][:n] * 1024
    labels = np.ones((n, 1))
    predictor.predict_batch(points[:2, None], labels[:2])  # the per-image preparation, done once

    def finish(low, iou):
        out = decode.CropCandidates([0, 0, 1024, 1024], 0, (1024, 1024), 0.0, 0.5)
        decode._finish(out, predictor, emb, low.flatten(0, 1), iou.flatten(0, 1), np.repeat(points, 3, 0),
                       [0, 0, 1024, 1024], 0.02, 0.5)  # bench_auto_speed.py's offset and floor

    t = time.perf_counter()
    low, iou = predictor.predict_batch(points[:, None], labels)
    decoder = time.perf_counter() - t
    t = time.perf_counter()
    finish(low, iou)
    finishing = time.perf_counter() - t
    print(f"{args.model}, {n} prompts: decoder {1e3 * decoder / n:.1f} ms per prompt, finishing its 3 candidates "
          f"{1e3 * finishing / n:.1f} ms per prompt ({decoder / (decoder + finishing):.0%} decoder)")
    for what, run in (("decoder", lambda: predictor.predict_batch(points[:, None], labels)),
                      ("finishing", lambda: finish(low, iou))):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        print(f"--- {what}\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
