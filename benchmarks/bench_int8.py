"""int8 against fp32 and bf16: quality on the same images and prompts, and speed.

1. The machine: CPU and flags, the matrix-product rates "auto" measures
   (napari_sam.model.precision_choice) and what "auto" picks from them.
2. Per model with random weights at 1024 x 1024 (vit_b, vit_t): image-encoder
   time in fp32, bf16 and int8 (best of --repeats, interleaved), the speed
   ratios, and against fp32: the embedding's relative error, the share of
   identical mask pixels and the largest predicted-IoU error over a grid of
   clicks (3 masks each).
3. The demo model on held-out generated nuclei: mean IoU with the truth of
   the mask shown (best predicted IoU) for a centre click and a box, in each
   precision, and against fp32 the share of identical pixels of the shown
   mask and the mean / largest predicted-IoU error.

Quality thresholds for "auto" (QUALITY_PASSES in precision_choice): masks
>= 98 % identical pixels, predicted IoU within 0.02, demo IoU within 0.01.

    python benchmarks/bench_int8.py [--models vit_b vit_t] [--demo-images 40] [--repeats 2]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_int8.py   # an AVX2-only CPU
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _machine import cpu_summary, load_average  # noqa: E402
from helpers import randomize_, rel_err, structured_rgb  # noqa: E402

from napari_sam.geometry import interior_point, mask_box, mask_iou  # noqa: E402
from napari_sam.model import SamPredictor, build_sam, load_model  # noqa: E402
from napari_sam.model.precision_choice import choose_on_cpu, measure_speeds  # noqa: E402
from napari_sam.synthetic import iter_training_pairs  # noqa: E402

PRECISIONS = ("fp32", "bf16", "int8")
HELD_OUT_SEED = 7_000_001  # as bench_demo_model.py: seeds training never drew


def predictors(model, skip=()):
    return {p: SamPredictor(model, device="cpu", precision=p) for p in PRECISIONS if p not in skip}


def compare_masks(preds, prompts):
    """Per precision: share of mask pixels equal to fp32's, and predicted-IoU errors, over the prompts."""
    same = {p: [] for p in preds}
    iou_err = {p: [] for p in preds}
    for prompt in prompts:
        ref_masks, ref_iou, _ = preds["fp32"].predict(**prompt)
        for p, pred in preds.items():
            masks, iou, _ = pred.predict(**prompt)
            same[p].append(float((masks == ref_masks).mean()))
            iou_err[p].extend(np.abs(iou - ref_iou).tolist())
    return {p: (np.mean(same[p]), np.mean(iou_err[p]), np.max(iou_err[p])) for p in preds}


def bench_model(name: str, repeats: int, slow_bf16: bool) -> None:
    model = randomize_(build_sam(name), seed=1).eval()
    preds = predictors(model)
    image = structured_rgb(1024, 1024, seed=3)
    timed = [p for p in PRECISIONS if not (p == "bf16" and slow_bf16)]
    best = {p: float("inf") for p in timed}
    for p in PRECISIONS:  # warm-up, and every precision's embedding for the comparisons
        preds[p].set_image(image)
    for _ in range(repeats):
        for p in timed:
            start = time.perf_counter()
            preds[p].set_image(image)
            best[p] = min(best[p], time.perf_counter() - start)
    ref = preds["fp32"].get_image_embedding()
    clicks = [dict(point_coords=[[x, y]], point_labels=[1]) for y in range(128, 1024, 256) for x in range(128, 1024, 256)]
    quality = compare_masks(preds, clicks)
    print(f"\n== {name}, random weights, 1024 x 1024: image encoder (best of {repeats}) and 16 clicks x 3 masks ==")
    for p in PRECISIONS:
        t = f"{best[p]:6.2f} s  {best['fp32'] / best[p]:4.2f}x fp32" if p in best else "  (not timed: bf16 emulated here)"
        if p == "int8" and "bf16" in best:
            t += f"  {best['bf16'] / best[p]:4.2f}x bf16"
        same, mean_err, max_err = quality[p]
        err = rel_err(preds[p].get_image_embedding(), ref)
        print(f"  {p}: {t:34s} embedding rel. error {err:.1e}   masks {same:.3%} identical   "
              f"IoU-prediction error mean {mean_err:.4f} max {max_err:.4f}")


def bench_demo(n_images: int) -> None:
    preds = predictors(load_model("demo", device="cpu"))
    true_iou = {p: {"centre": [], "box": []} for p in PRECISIONS}
    same = {p: [] for p in PRECISIONS}
    iou_err = {p: [] for p in PRECISIONS}
    for image, labels in iter_training_pairs(seed=HELD_OUT_SEED, size=256, count=n_images):
        for pred in preds.values():
            pred.set_image(image)
        for obj in range(1, int(labels.max()) + 1):
            mask = labels == obj
            if mask.sum() < 30:
                continue
            for kind, prompt in (("centre", dict(point_coords=[interior_point(mask)], point_labels=[1])),
                                 ("box", dict(box=mask_box(mask)))):
                ref_masks, ref_scores, _ = preds["fp32"].predict(**prompt)
                ref_shown = ref_masks[int(np.argmax(ref_scores))]
                for p, pred in preds.items():
                    masks, scores, _ = pred.predict(**prompt)
                    shown = masks[int(np.argmax(scores))]
                    true_iou[p][kind].append(mask_iou(shown, mask))
                    same[p].append(float((shown == ref_shown).mean()))
                    iou_err[p].extend(np.abs(scores - ref_scores).tolist())
    n = len(true_iou["fp32"]["box"])
    print(f"\n== demo model: {n} held-out nuclei in {n_images} generated images (256 x 256) ==")
    for p in PRECISIONS:
        c, b = np.mean(true_iou[p]["centre"]), np.mean(true_iou[p]["box"])
        dc = c - np.mean(true_iou["fp32"]["centre"])
        db = b - np.mean(true_iou["fp32"]["box"])
        print(f"  {p}: centre click IoU {c:.4f} ({dc:+.4f})   box IoU {b:.4f} ({db:+.4f})   shown mask "
              f"{np.mean(same[p]):.3%} identical   IoU-prediction error mean {np.mean(iou_err[p]):.4f} "
              f"max {np.max(iou_err[p]):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["vit_b", "vit_t"], choices=["vit_b", "vit_l", "vit_h", "vit_t"])
    parser.add_argument("--demo-images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    limits = ", ".join(f"{v}={os.environ[v]}" for v in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA") if v in os.environ)
    print(cpu_summary() + (f" (limited: {limits})" if limits else ""))
    print(f"torch {torch.__version__}, {args.threads} threads, load average {load_average()}")
    rates = measure_speeds()
    print("matrix products (2048 x 768 x 3072): " + ", ".join(f"{p} {r:.0f} GOP/s" for p, r in rates.items()))
    for kind in ("ImageEncoderViT", "TinyViT"):
        print(f"auto for {kind}: {choose_on_cpu(rates, kind).reason}")
    slow_bf16 = rates["bf16"] < rates["fp32"]
    for name in args.models:
        bench_model(name, args.repeats, slow_bf16)
    if args.demo_images:
        bench_demo(args.demo_images)


if __name__ == "__main__":
    main()
