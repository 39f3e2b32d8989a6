"""Finishing grid masks (upsample, stability, box, run lengths) on windows against whole planes.

Random weights (bench_auto_speed.py) give masks of noise that span the
image, where windows cannot help; trained models give compact objects. This
takes compact logits from a trained model: the demo model's 32 x 32 grid on
generated nuclei (256 px), each low-resolution mask upsampled 4x so that it
is SAM's layout for a 1024 x 1024 image (256 x 256 logits), and times steps
3-6 of napari_sam.auto.decode on all 3072 candidates both ways, best of
``--repeats``, checking that both give the same numbers.

    python benchmarks/bench_auto_windows.py
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

from napari_sam.auto import decode, windows  # noqa: E402
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


def finish(low, iou, windowed: bool):
    predictor = SimpleNamespace(model=SimpleNamespace(image_size=1024))
    emb = SimpleNamespace(input_size=(1024, 1024), original_size=(1024, 1024))
    out = decode.CropCandidates([0, 0, 1024, 1024], 0, (1024, 1024), 0.0, 0.0)
    points = np.zeros((len(iou), 2))
    applies = windows.applies
    if not windowed:
        windows.applies = lambda *a: False
    try:
        start = time.perf_counter()
        for s in range(0, len(iou), 64):  # the generator's batches
            decode._finish(out, predictor, emb, low[s : s + 64], iou[s : s + 64], points[s : s + 64],
                           [0, 0, 1024, 1024], 1.0, 0.0)
        return time.perf_counter() - start, out
    finally:
        windows.applies = applies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_summary())
    low, iou = compact_logits(args.points_per_side, seed=3)
    share = np.mean([windows.window_pixels(w, 1024, 256) <= decode.WINDOW_SHARE * 1024**2
                     for w in windows.windows_of(low, 1024, (1024, 1024), -1.0)])
    print(f"load average {load_average()}; {len(iou)} candidates at 1024 x 1024, {share:.0%} on windows")
    best = {True: np.inf, False: np.inf}
    results = {}
    for _ in range(args.repeats):
        for windowed in (False, True):  # interleaved: a busy moment hits both
            seconds, results[windowed] = finish(low, iou, windowed)
            best[windowed] = min(best[windowed], seconds)
    a, b = results[False], results[True]
    same = (np.array_equal(a.stability, b.stability, equal_nan=True) and np.array_equal(a.boxes, b.boxes)
            and all(np.array_equal(x, y) for x, y in zip(a.rles, b.rles)) and len(a.rles) == len(b.rles))
    print(f"whole planes {best[False]:.2f} s ({best[False] / len(iou) * 1e3:.1f} ms per candidate), "
          f"windows {best[True]:.2f} s ({best[True] / len(iou) * 1e3:.1f} ms): {best[False] / best[True]:.1f}x; "
          f"identical results: {same}")


if __name__ == "__main__":
    main()
