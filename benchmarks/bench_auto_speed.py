"""Segment everything: our generator against Segment Anything's, same random weights, one process.

For each grid: the reference's ``generate`` minus its ``set_image`` (the
embedding is given to it, as the cache gives it to ours), against ours from
the same embedding (fp32, and bf16 where the CPU has fast bf16), the speed-up,
the parity (share of each side's masks that have a mask of the other at
IoU >= 0.95; largest difference of predicted IoU and stability score between
matched masks), and the time of re-filtering the kept grid with new
thresholds. Random weights: thresholds are lowered so that masks survive.

    python benchmarks/bench_auto_speed.py --model vit_b --size 1024 --grids 16 32
    python benchmarks/bench_auto_speed.py --model vit_b --memory 1024 2048   # peak extra memory, ours

Target: >= 10x the reference with parity held (>= 98 % both ways, scores within 1e-3 in fp32).
"""

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks")]
import reference  # noqa: E402
from _machine import cpu_summary, load_average  # noqa: E402
from helpers import randomize_, structured_rgb  # noqa: E402

from napari_sam.auto import AutomaticMaskGenerator  # noqa: E402
from napari_sam.auto.rle import from_dict as decode_rle  # noqa: E402
from napari_sam.model.build import build_sam  # noqa: E402
from napari_sam.model.device import cpu_has_fast_bf16  # noqa: E402
from napari_sam.model.predictor import SamPredictor  # noqa: E402

# Random weights give logits of a few hundredths: a small stability offset makes the score mean something.
# Their masks are noise spanning the image, so box NMS would keep one: it is switched off (1.0), and every
# stable mask is compared. Run-length output keeps thousands of masks small.
SETTINGS = dict(pred_iou_thresh=0.0, stability_score_thresh=0.5, stability_score_offset=0.02, box_nms_thresh=1.0,
                output_mode="uncompressed_rle")


def _models(name, seed=1):
    if name == "vit_t":
        ref_pkg = reference.mobile_sam()
    else:
        ref_pkg = reference.segment_anything()
    ref = randomize_(ref_pkg.sam_model_registry[name](), seed=seed).eval()
    ours = build_sam(name)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref_pkg, ref, ours.eval()


def _reference_generate(ref_pkg, ref, image, grid):
    gen = ref_pkg.SamAutomaticMaskGenerator(ref, points_per_side=grid, **SETTINGS)
    p = gen.predictor
    with torch.no_grad():
        p.set_image(image)
    saved = (p.features, p.original_size, p.input_size)

    def given_embedding(_image):  # the embedding comes from the cache, as ours does
        p.features, p.original_size, p.input_size = saved
        p.is_image_set = True

    p.set_image = given_embedding
    t = time.perf_counter()
    records = gen.generate(image)
    return records, time.perf_counter() - t


def _parity(ref_records, our_records):
    """(share of ref masks matched at IoU >= 0.95, the other way round, max |d iou|, max |d stability|).

    A mask's partner is the candidate of the same grid point with the closest predicted IoU.
    """
    by_point = {}
    for j, o in enumerate(our_records):
        by_point.setdefault(tuple(np.round(o["point_coords"][0], 3)), []).append(j)
    matched_ref, matched_ours, d_iou, d_stab = 0, set(), 0.0, 0.0
    for r in ref_records:
        same_point = by_point.get(tuple(np.round(r["point_coords"][0], 3)), [])
        if not same_point:
            continue
        j = min(same_point, key=lambda j: abs(our_records[j]["predicted_iou"] - r["predicted_iou"]))
        a, b = decode_rle(r["segmentation"]), decode_rle(our_records[j]["segmentation"])
        if (a & b).sum() / max((a | b).sum(), 1) >= 0.95:
            matched_ref += 1
            matched_ours.add(j)
            d_iou = max(d_iou, abs(r["predicted_iou"] - our_records[j]["predicted_iou"]))
            d_stab = max(d_stab, abs(r["stability_score"] - our_records[j]["stability_score"]))
    n_r, n_o = len(ref_records), len(our_records)
    return matched_ref / max(n_r, 1), len(matched_ours) / max(n_o, 1), d_iou, d_stab


def speed(args):
    torch.set_num_threads(args.threads)
    print(f"{cpu_summary()}; torch threads {args.threads}; load {load_average()}")
    ref_pkg, ref, ours = _models(args.model)
    image = structured_rgb(args.size, args.size, seed=3)
    precisions = ["fp32"] + (["bf16"] if cpu_has_fast_bf16() and not args.fp32_only else [])
    for grid in args.grids:
        if grid in args.skip_reference:
            ref_records, ref_s = None, float("nan")
        else:
            ref_records, ref_s = _reference_generate(ref_pkg, ref, image, grid)
        line = f"{args.model} {args.size}x{args.size} grid {grid}x{grid}: reference {ref_s:.1f} s"
        for precision in precisions:
            gen = AutomaticMaskGenerator(SamPredictor(ours, precision=precision), points_per_side=grid, **SETTINGS)
            emb = gen.predictor.set_image(image)
            t = time.perf_counter()
            records = gen.filter(gen.decode_grid(embedding=emb, refilter=False))
            ours_s = time.perf_counter() - t
            line += f" | ours {precision} {ours_s:.1f} s ({ref_s / ours_s:.1f}x)"
            if ref_records is not None:
                r2o, o2r, d_iou, d_stab = _parity(ref_records, records)
                line += (f", masks {len(ref_records)} vs {len(records)}, matched {100 * r2o:.1f} % / {100 * o2r:.1f} %"
                         f", max d iou {d_iou:.1e}, d stability {d_stab:.1e}")
            if precision == precisions[-1]:
                kept = gen.decode_grid(embedding=emb)
                t = time.perf_counter()
                gen.filter(kept, pred_iou_thresh=0.5, stability_score_thresh=0.8)
                line += f" | re-filter {1000 * (time.perf_counter() - t):.0f} ms ({kept.n_candidates} candidates kept," \
                        f" {kept.nbytes / 1e6:.0f} MB)"
        print(line, flush=True)


def memory_one(args):
    """In a fresh process: the peak resident memory added by decoding and filtering one image."""
    torch.set_num_threads(args.threads)
    ours = build_sam(args.model)
    randomize_(ours, seed=1)
    gen = AutomaticMaskGenerator(SamPredictor(ours, precision="fp32"), points_per_side=args.grids[0], **SETTINGS)
    emb = gen.predictor.set_image(structured_rgb(args.size, args.size, seed=3))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    records = gen.filter(gen.decode_grid(embedding=emb, refilter=False), output_mode="uncompressed_rle")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    full = 3 * args.grids[0] ** 2 * args.size**2 * 4
    print(f"{args.model} {args.size}x{args.size} grid {args.grids[0]}: peak extra memory {(after - before) / 1e3:.0f} MB "
          f"({len(records)} masks); all grid logits at full resolution would be {full / 1e9:.1f} GB", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vit_b")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--grids", type=int, nargs="+", default=[16, 32])
    p.add_argument("--skip-reference", type=int, nargs="*", default=[], help="grids to run without the reference")
    p.add_argument("--fp32-only", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory", type=int, nargs="*", default=None, help="image sizes for the memory check")
    p.add_argument("--memory-one", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_one:
        return memory_one(args)
    if args.memory is not None:
        print(cpu_summary())
        for size in args.memory:
            subprocess.run([sys.executable, __file__, "--memory-one", "--model", args.model, "--size", str(size),
                            "--grids", str(args.grids[0]), "--threads", str(args.threads)], check=True)
        return
    speed(args)


if __name__ == "__main__":
    main()
