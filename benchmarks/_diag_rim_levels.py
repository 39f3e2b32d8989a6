"""Diagnostics (not a benchmark): would a per-object logit threshold shape the demo model's rims better?

    python _diag_rim_levels.py [--seeds 7000] [--images 14] [--cache DIR]

Each kept mask of the recommended settings is found again among the grid's candidates (its point and
predicted IoU), its logits are decoded anew, and its mask is cut at other levels: one level for all, the
level a rule picks per object (the steepest image gradient along the contour), and the level the truth
picks (an oracle, the ceiling of any such rule). Also an image-only rule: each mask re-cut at the midpoint
of its inside's and its surroundings' smoothed intensity.

On 42 tuning images (seeds 7000+), kept 0.753: the oracle level per object 0.774, the steepest contour 0.755,
the steepest contour only growing or shrinking the merged mask 0.760, the midpoint rule 0.710-0.714.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _diag_auto_errors import decoded_grids  # noqa: E402
from _machine import cpu_summary, load_average  # noqa: E402

from napari_sam.auto import AutomaticMaskGenerator  # noqa: E402
from napari_sam.auto.labels import masks_to_labels  # noqa: E402
from napari_sam.auto.metrics import mean_segmentation_accuracy  # noqa: E402
from napari_sam.model import SamPredictor, load_model  # noqa: E402
from napari_sam.model.registry import DEMO_AUTO_SETTINGS  # noqa: E402

LEVELS = np.round(np.arange(-3.0, 2.01, 0.25), 2)


def record_logits(gen, image, records):
    """Each record's candidate's logits at the image's size (decoded anew from its point, matched by predicted IoU)."""
    pred = gen.predictor
    emb = pred.set_image(image)
    pts = np.array([r["point_coords"][0] for r in records])
    low, iou = pred.predict_batch(pts[:, None, :], np.ones((len(pts), 1)))
    out = []
    for k, r in enumerate(records):
        m = int(np.argmin(np.abs(iou[k].numpy() - r["predicted_iou"])))
        out.append(pred.upscale_logits(low[k : k + 1, m : m + 1], emb)[0, 0].numpy())
    return out


def contour_gradient(grad, logits, level):
    """Mean gradient magnitude on the mask's inner boundary at ``level``."""
    mask = logits > level
    rim = mask & ~ndimage.binary_erosion(mask)
    return grad[rim].mean() if rim.any() else 0.0


def half_level(smooth, masks, grow):
    """Each mask re-cut at the midpoint of its inside's and its surroundings' smoothed intensity, near itself."""
    others = np.zeros(smooth.shape, np.int32)
    for k, m in enumerate(masks):
        others[m] += 1
    out = []
    for m in masks:
        if m.sum() < 10:
            out.append(m)
            continue
        core = ndimage.binary_erosion(m, iterations=2)
        core = core if core.any() else m
        near = ndimage.binary_dilation(m, iterations=grow)
        ring = ndimage.binary_dilation(m, iterations=grow + 4) & ~near & (others == 0)
        if not ring.any():
            out.append(m)
            continue
        level = 0.5 * (np.median(smooth[core]) + np.median(smooth[ring]))
        cut = near & (smooth > level)
        # pixels held by other masks and not by this one stay theirs
        cut &= ~((others - m) > 0) | m
        lab, n = ndimage.label(cut)
        if n > 1:
            held = np.bincount(lab[m], minlength=n + 1)
            held[0] = 0
            cut = lab == int(np.argmax(held))
        out.append(ndimage.binary_fill_holes(cut))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=7000)
    p.add_argument("--images", type=int, default=14)
    p.add_argument("--cache", default="/tmp/napari-sam-msa-cache")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_summary()}; torch threads {args.threads}; load {load_average()}", flush=True)
    gen = AutomaticMaskGenerator(SamPredictor(load_model("demo"), precision="auto"), **DEMO_AUTO_SETTINGS)
    grids = decoded_grids(gen, range(args.seeds, args.seeds + args.images), args.cache)
    scores = {}
    for image, truth, decoded in grids:
        records = gen.filter(decoded)
        logits = record_logits(gen, image, records)
        base = [r["segmentation"] for r in records]
        img = image.astype(np.float32) if image.ndim == 2 else image.astype(np.float32).mean(-1)
        grad = ndimage.gaussian_gradient_magnitude(img, 1.0)
        t_area = np.bincount(truth.ravel(), minlength=truth.max() + 1)
        variants = {"kept": base}
        for lv in (-1.5, -1.0, -0.5, 0.0):
            variants[f"one level {lv}"] = [lg > lv for lg in logits]
        oracle, by_grad, by_grad_merged = [], [], []
        for b, lg in zip(base, logits):
            inside = np.bincount(truth[b], minlength=len(t_area))
            t = int(np.argmax(inside[1:])) + 1 if inside[1:].any() else 0
            best, best_iou = b, -1.0
            for lv in LEVELS:
                m = lg > lv
                iou = (m & (truth == t)).sum() / max(1, (m | (truth == t)).sum()) if t else 0.0
                if iou > best_iou:
                    best, best_iou = m, iou
            oracle.append(best)
            g = [contour_gradient(grad, lg, lv) for lv in LEVELS]
            lv = LEVELS[int(np.argmax(g))]
            by_grad.append(lg > lv)
            # the same level shift applied to the merged mask: grow/shrink it with the logits' level set
            by_grad_merged.append(b | (lg > lv) if lv < -0.5 else b & (lg > lv))
        variants["oracle level"] = oracle
        smooth = ndimage.gaussian_filter(img, 1.0)
        for grow in (2, 3):
            variants[f"half level, grow {grow}"] = half_level(smooth, base, grow)
        variants["steepest contour"] = by_grad
        variants["steepest, on merged"] = by_grad_merged
        for name, masks in variants.items():
            labels = masks_to_labels(masks, truth.shape)[0]
            scores.setdefault(name, []).append(mean_segmentation_accuracy(truth, labels))
    for name, v in scores.items():
        print(f"{name:<24} mSA {np.mean(v):.3f} (min {np.min(v):.3f})", flush=True)


if __name__ == "__main__":
    main()
