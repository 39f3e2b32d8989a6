"""Finishing grid masks (upsample, stability, box, run lengths) on windows against whole planes.

Three ways: whole planes only; whole planes with the stability counted from
the low-res logits by cells (cell_counts.py); windows for compact masks and
cells for the others (cells are off in the generator: see decode.CELL_SHARE).

Random weights (bench_auto_speed.py) give masks of noise that span the
image, where windows cannot help; trained models give compact objects. This
takes compact logits from a trained model: the demo model's 32 x 32 grid on
generated nuclei (256 px), each low-resolution mask upsampled 4x so that it
is SAM's layout for a 1024 x 1024 image (256 x 256 logits), and times steps
3-6 of napari_sam.auto.decode on all 3072 candidates both ways, best of
``--repeats``, checking that both give the same numbers.

    python benchmarks/bench_auto_windows.py [--stability-floor 0.95]
"""

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_summary, load_average  # noqa: E402

from napari_sam.auto import cell_counts, decode, windows  # noqa: E402
from napari_sam.model import SamPredictor, load_model  # noqa: E402
from napari_sam.model.image import to_uint8_rgb  # noqa: E402
from napari_sam.synthetic import make_nuclei_2d  # noqa: E402


def compact_logits(points_per_side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    predictor = SamPredictor(load_model("demo"), precision="fp32")
    predictor.set_image(to_uint8_rgb(make_nuclei_2d((256, 256), seed=seed)[0]).rgb)
    side = (np.arange(points_per_side) + 0.5) / points_per_side * 256
    points = np.stack(np.meshgrid(side, side), -1).reshape(-1, 1, 2)
    low, iou = predictor.predict_batch(points, np.ones((len(points), 1)))
    low = F.interpolate(low.flatten(0, 1)[:, None], scale_factor=4, mode="bilinear", align_corners=False)[:, 0]
    return low, iou.flatten()


MODES = ("whole planes", "cells", "windows + cells")
#: The share of straddling cells below which a mask's stability is counted by cells (off in the generator).
CELL_SHARE = 0.1


def finish(low, iou, mode: str, stability_floor: float):
    predictor = SimpleNamespace(model=SimpleNamespace(image_size=1024))
    emb = SimpleNamespace(input_size=(1024, 1024), original_size=(1024, 1024))
    out = decode.CropCandidates([0, 0, 1024, 1024], 0, (1024, 1024), 0.0, stability_floor)
    points = np.zeros((len(iou), 2))
    applies, cells_apply, share = windows.applies, cell_counts.applies, decode.CELL_SHARE
    decode.CELL_SHARE = CELL_SHARE
    if mode != "windows + cells":
        windows.applies = lambda *a: False
    if mode == "whole planes":
        cell_counts.applies = lambda *a: False
    try:
        start = time.perf_counter()
        for s in range(0, len(iou), 64):  # the generator's batches
            decode._finish(out, predictor, emb, low[s : s + 64], iou[s : s + 64], points[s : s + 64],
                           [0, 0, 1024, 1024], 1.0, stability_floor)
        return time.perf_counter() - start, out
    finally:
        windows.applies, cell_counts.applies, decode.CELL_SHARE = applies, cells_apply, share


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stability-floor", type=float, default=0.0,
                        help="drop masks below it while finishing (the generator's refilter=False)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_summary())
    low, iou = compact_logits(args.points_per_side, seed=3)
    share = np.mean([windows.window_pixels(w, 1024, 256) <= decode.WINDOW_SHARE * 1024**2
                     for w in windows.windows_of(low, 1024, (1024, 1024), -1.0)])
    print(f"load average {load_average()}; {len(iou)} candidates at 1024 x 1024, {share:.0%} on windows")
    cells = cell_counts.straddling_share(low, (1.0, -1.0)).numpy() <= CELL_SHARE
    print(f"{cells.mean():.0%} with a short enough boundary for cells; stability floor {args.stability_floor}")
    best = {m: np.inf for m in MODES}
    results = {}
    for _ in range(args.repeats):
        for mode in MODES:  # interleaved: a busy moment hits all
            seconds, results[mode] = finish(low, iou, mode, args.stability_floor)
            best[mode] = min(best[mode], seconds)
    a = results[MODES[0]]
    line = f"whole planes {best[MODES[0]]:.2f} s ({best[MODES[0]] / len(iou) * 1e3:.1f} ms per candidate)"
    for mode in MODES[1:]:
        b = results[mode]
        same = (np.array_equal(a.stability, b.stability, equal_nan=True) and np.array_equal(a.boxes, b.boxes)
                and len(a.rles) == len(b.rles) and all(np.array_equal(x, y) for x, y in zip(a.rles, b.rles)))
        line += (f"; {mode} {best[mode]:.2f} s ({best[mode] / len(iou) * 1e3:.1f} ms): "
                 f"{best[MODES[0]] / best[mode]:.1f}x, identical results: {same}")
    print(line)

if __name__ == "__main__":
    main()
