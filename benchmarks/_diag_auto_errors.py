"""Diagnostics (not a benchmark): which kind of error costs the demo model's automatic segmentation most mSA.

    python _diag_auto_errors.py [--seeds 7000] [--images 14] [--cache DIR] ['{setting changes}' ...]

Each image's grid is decoded once at the demo model's recommended settings (refilter=True, cached as a
pickle in ``--cache``), then filtered with the recommended settings plus each JSON dict of changes given.
Per variant: mSA, and the errors counted at IoU 0.5 and at 0.75-0.9 by kind:

* ``merge``: a predicted object holding at least half of each of two or more true nuclei;
* ``miss``: a true nucleus no predicted object overlaps by IoU 0.1;
* ``false+``: a predicted object with less than half of its pixels on nuclei;
* ``rim``: the rest (a nucleus and its best object overlap, but below the IoU threshold).

And the mSA an oracle would reach fixing one kind only (the gain is that kind's share of the loss):
merges split along the truth, misses painted in, false positives removed, or every matched object's rim
made exact (matching at IoU 0.5).
"""

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import cpu_summary, load_average  # noqa: E402

from napari_sam.auto import AutomaticMaskGenerator  # noqa: E402
from napari_sam.auto.labels import masks_to_labels  # noqa: E402
from napari_sam.auto.metrics import accuracy_at, iou_matrix, mean_segmentation_accuracy  # noqa: E402
from napari_sam.model import SamPredictor, load_model  # noqa: E402
from napari_sam.model.registry import DEMO_AUTO_SETTINGS  # noqa: E402
from napari_sam.synthetic import make_nuclei_2d  # noqa: E402

KINDS = ("merge", "miss", "false+", "rim")


def decoded_grids(gen, seeds, cache):
    out = []
    for seed in seeds:
        image, truth = make_nuclei_2d((256, 256), seed=seed)
        path = Path(cache) / f"demo-recommended-{seed}.pkl"
        if path.exists():
            decoded = pickle.loads(path.read_bytes())
        else:
            decoded = gen.decode_grid(image, refilter=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps(decoded))
        out.append((image, truth, decoded))
    return out


def overlaps(truth, labels):
    """(pixels shared by true i and predicted j, true areas, predicted areas), background excluded."""
    nt, nl = int(truth.max()), int(labels.max())
    both = np.bincount(truth.ravel().astype(np.int64) * (nl + 1) + labels.ravel(), minlength=(nt + 1) * (nl + 1))
    both = both.reshape(nt + 1, nl + 1)
    return both[1:, 1:], both[1:, :].sum(1), both[:, 1:].sum(0)


def kinds_of(truth, labels):
    shared, t_area, p_area = overlaps(truth, labels)
    merged = (shared >= 0.5 * t_area[:, None]).sum(0) >= 2  # per predicted object
    false_pos = shared.sum(0) < 0.5 * p_area
    iou = iou_matrix(truth, labels)
    return shared, iou, merged, false_pos


def count_errors(truth, labels, thresholds):
    shared, iou, merged, false_pos = kinds_of(truth, labels)
    counts = dict.fromkeys(KINDS, 0)
    for t in thresholds:
        score = np.where(iou >= t, iou, 0.0)
        rows, cols = linear_sum_assignment_pairs(score)
        matched_t, matched_p = set(rows), set(cols)
        for i in range(iou.shape[0]):
            if i in matched_t:
                continue
            best = int(np.argmax(shared[i])) if iou.shape[1] else -1
            if best < 0 or iou[i].max() < 0.1 and not merged[best]:
                counts["miss"] += 1
            elif merged[best] and shared[i, best] >= 0.5 * shared[i].sum():
                counts["merge"] += 1
            else:
                counts["rim"] += 1
        for j in range(iou.shape[1]):
            if j in matched_p:
                continue
            counts["merge" if merged[j] else "false+" if false_pos[j] else "rim"] += 1
    return counts


def linear_sum_assignment_pairs(score):
    from scipy.optimize import linear_sum_assignment

    if score.size == 0:
        return [], []
    rows, cols = linear_sum_assignment(-score)
    ok = score[rows, cols] > 0
    return rows[ok], cols[ok]


def oracles(truth, labels):
    """mSA with one kind of error fixed by the truth: {kind: mSA}."""
    shared, iou, merged, false_pos = kinds_of(truth, labels)
    t_area = np.bincount(truth.ravel().astype(np.int64), minlength=iou.shape[0] + 1)[1:]
    out = {}
    # merges split: each pixel of a merged object goes to the nearest of the nuclei it holds
    fixed, top = labels.copy(), int(labels.max())
    for j in np.flatnonzero(merged):
        inside = np.flatnonzero(shared[:, j] >= 0.5 * t_area)
        region = labels == j + 1
        held = np.isin(truth, inside + 1)
        _, (iy, ix) = ndimage.distance_transform_edt(~held, return_indices=True)
        nearest = truth[iy, ix]
        for t in inside:
            top += 1
            fixed[region & (nearest == t + 1)] = top
    out["merge"] = mean_segmentation_accuracy(truth, fixed)
    # misses painted in where nothing predicted is
    fixed, top = labels.copy(), int(labels.max())
    for i in range(iou.shape[0]):
        best = int(np.argmax(shared[i])) if iou.shape[1] else -1
        if best < 0 or iou[i].max() < 0.1 and not merged[best]:
            top += 1
            fixed[(truth == i + 1) & (fixed == 0)] = top
    out["miss"] = mean_segmentation_accuracy(truth, fixed)
    # false positives removed
    fixed = labels.copy()
    fixed[np.isin(labels, np.flatnonzero(false_pos) + 1)] = 0
    out["false+"] = mean_segmentation_accuracy(truth, fixed)
    # rims exact for the pairs matched at IoU 0.5
    rows, cols = linear_sum_assignment_pairs(np.where(iou >= 0.5, iou, 0.0))
    fixed = labels.copy()
    for i, j in zip(rows, cols):
        fixed[fixed == j + 1] = 0
    for i, j in zip(rows, cols):
        fixed[(truth == i + 1) & (fixed == 0)] = j + 1
    out["rim"] = mean_segmentation_accuracy(truth, fixed)
    return out


def rim_detail(gen, grids, changes):
    """Matched pairs at IoU 0.5: mean IoU, missed and extra pixels (share of the nucleus), best candidate IoU."""
    from napari_sam.auto import rle

    s = gen.settings.replace(**changes) if changes else gen.settings
    rows = []
    for _, truth, decoded in grids:
        labels = masks_to_labels(gen.filter(decoded, **changes), truth.shape)[0]
        iou = iou_matrix(truth, labels)
        crop = decoded.crops[0]
        n = iou.shape[0]
        best_all, best_ok = np.zeros(n), np.zeros(n)
        t_area = np.bincount(truth.ravel().astype(np.int64), minlength=n + 1)
        passed = (crop.iou > s.pred_iou_thresh) & (crop.stability >= s.stability_score_thresh)
        for k, counts in enumerate(crop.rles):
            m = rle.decode(counts, crop.image_hw)
            inside = np.bincount(truth[m].astype(np.int64), minlength=n + 1)
            c_iou = inside[1:] / (t_area[1:] + m.sum() - inside[1:])
            best_all = np.maximum(best_all, c_iou)
            if passed[k]:
                best_ok = np.maximum(best_ok, c_iou)
        r, c = linear_sum_assignment_pairs(np.where(iou >= 0.5, iou, 0.0))
        for i, j in zip(r, c):
            t, pm = truth == i + 1, labels == j + 1
            rows.append((iou[i, j], (t & ~pm).sum() / t.sum(), (pm & ~t & (truth > 0)).sum() / t.sum(),
                         (pm & (truth == 0)).sum() / t.sum(), best_ok[i], best_all[i]))
    a = np.array(rows)
    print(f"  {len(a)} matched pairs: IoU {a[:, 0].mean():.3f}; missed {a[:, 1].mean():.3f}, extra on other "
          f"nuclei {a[:, 2].mean():.3f}, extra on background {a[:, 3].mean():.3f} (shares of the nucleus); "
          f"best candidate IoU passing thresholds {a[:, 4].mean():.3f}, of all {a[:, 5].mean():.3f}", flush=True)
    for q in (0.75, 0.85, 0.9):
        print(f"  IoU >= {q}: output {np.mean(a[:, 0] >= q):.3f}, best passing {np.mean(a[:, 4] >= q):.3f}, "
              f"best of all {np.mean(a[:, 5] >= q):.3f}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=7000)
    p.add_argument("--images", type=int, default=14)
    p.add_argument("--cache", default="/tmp/napari-sam-msa-cache")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--detail", action="store_true", help="error classes and oracles, not only mSA")
    p.add_argument("--rim", action="store_true", help="rim error of matched objects and the candidates' best")
    p.add_argument("variants", nargs="*", default=["{}"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_summary()}; torch threads {args.threads}; load {load_average()}", flush=True)
    gen = AutomaticMaskGenerator(SamPredictor(load_model("demo"), precision="auto"), **DEMO_AUTO_SETTINGS)
    grids = decoded_grids(gen, range(args.seeds, args.seeds + args.images), args.cache)
    for variant in args.variants:
        changes = json.loads(variant)
        msa, found_counts, oracle = [], [], {k: [] for k in KINDS}
        at_half, high = dict.fromkeys(KINDS, 0), dict.fromkeys(KINDS, 0)
        for _, truth, decoded in grids:
            labels = masks_to_labels(gen.filter(decoded, **changes), truth.shape)[0]
            msa.append(mean_segmentation_accuracy(truth, labels))
            tp, fp, fn = accuracy_at(iou_matrix(truth, labels), 0.5)
            found_counts.append(tp / (tp + fn))
            if args.detail:
                for k, v in count_errors(truth, labels, (0.5,)).items():
                    at_half[k] += v
                for k, v in count_errors(truth, labels, (0.75, 0.8, 0.85, 0.9)).items():
                    high[k] += v
                for k, v in oracles(truth, labels).items():
                    oracle[k].append(v)
        print(f"{variant}: mSA {np.mean(msa):.3f} (min {np.min(msa):.3f}) found@0.5 {np.mean(found_counts):.3f}",
              flush=True)
        if args.detail:
            print(f"  errors at IoU 0.5: {at_half}; at 0.75-0.9 (summed over 4): {high}")
            print("  oracle mSA fixing one kind: " + ", ".join(
                f"{k} {np.mean(v):.3f} (+{np.mean(v) - np.mean(msa):.3f})" for k, v in oracle.items()), flush=True)
        if args.rim:
            rim_detail(gen, grids, changes)


if __name__ == "__main__":
    main()
