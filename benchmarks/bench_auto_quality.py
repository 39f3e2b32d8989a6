"""Segment everything with the shipped demo model on held-out generated nuclei, against a classical pipeline.

Per setting: mean segmentation accuracy (mSA, IoU 0.5 .. 0.95), the share of
true nuclei found at IoU 0.5, and seconds per image; for

* the demo model at its recommended settings (napari_sam.model.registry, DEMO_AUTO_SETTINGS),
* the demo model at Segment Anything's defaults,
* Otsu threshold + distance-transform watershed (scikit-image), the classical baseline.

``--tune`` first searches the thresholds on other generated images (seeds
disjoint from the test seeds; the grid is decoded once per image and only
re-filtered for each combination) and prints the best combination.
Stacks (``--stacks N``): the same on generated 3D stacks, slices linked through z.

    python benchmarks/bench_auto_quality.py --images 6 --stacks 2 [--tune] [--model PATH]

``--model`` scores another checkpoint at the same recommended settings (the demo model's).

Target: mSA >= 0.80 in 2D at the recommended settings, above the baseline.
"""

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import cpu_summary, load_average  # noqa: E402

from napari_sam.auto import AutomaticMaskGenerator  # noqa: E402
from napari_sam.auto.labels import masks_to_labels  # noqa: E402
from napari_sam.auto.metrics import found_fraction, mean_segmentation_accuracy  # noqa: E402
from napari_sam.auto.stack import segment_stack  # noqa: E402
from napari_sam.model import SamPredictor, load_model  # noqa: E402
from napari_sam.model.registry import DEMO_AUTO_SETTINGS  # noqa: E402
from napari_sam.synthetic import make_nuclei_2d, make_nuclei_3d  # noqa: E402

TEST_SEEDS, TUNE_SEEDS = 5000, 7000  # far from the training run's 63-bit seeds


def otsu_watershed(image, min_distance=5):
    """The classical pipeline: smooth, Otsu threshold, split touching nuclei by a distance-transform watershed."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    smooth = gaussian(image.astype(np.float32), sigma=1)
    mask = ndimage.binary_fill_holes(smooth > threshold_otsu(smooth))
    pieces, _ = ndimage.label(mask)
    mask &= (np.bincount(pieces.ravel()) >= 15)[pieces]  # specks of noise are no nuclei
    distance = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=ndimage.label(mask)[0], exclude_border=False)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask)


def _score(rows, name, truth, labels, seconds):
    rows.setdefault(name, []).append((mean_segmentation_accuracy(truth, labels), found_fraction(truth, labels), seconds))


def _print(rows, what):
    for name, values in rows.items():
        msa, found, secs = np.array(values).T
        print(f"{what} {name:<34} mSA {msa.mean():.3f} (min {msa.min():.3f})  found@0.5 {found.mean():.3f}  "
              f"{secs.mean():.1f} s/{what.split()[0]}", flush=True)


def tune(model, n_images, precision):
    """Best thresholds on tuning images: decode each grid once, re-filter per combination."""
    images = [make_nuclei_2d((256, 256), seed=TUNE_SEEDS + i) for i in range(n_images)]
    best = []
    for grid in (16, 24, 32):
        gen = AutomaticMaskGenerator(SamPredictor(model, precision=precision), points_per_side=grid)
        decoded = [gen.decode_grid(img) for img, _ in images]
        for iou, stab, nms, area in itertools.product((0.5, 0.6, 0.7, 0.8), (0.8, 0.9, 0.95), (0.3, 0.4, 0.5, 0.7),
                                                      (0, 20)):
            change = dict(pred_iou_thresh=iou, stability_score_thresh=stab, box_nms_thresh=nms, min_mask_region_area=area)
            scores = [mean_segmentation_accuracy(t, masks_to_labels(gen.filter(d, **change), t.shape)[0])
                      for d, (_, t) in zip(decoded, images)]
            best.append((float(np.mean(scores)), {"points_per_side": grid, **change}))
    best.sort(key=lambda b: -b[0])
    for score, settings in best[:5]:
        print(f"tuning: mSA {score:.3f} with {settings}", flush=True)
    return best[0][1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=6)
    p.add_argument("--stacks", type=int, default=0)
    p.add_argument("--tune", type=int, default=0, metavar="N", help="tune on N other images first")
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--model", default="demo", help="zoo name or checkpoint file (default demo)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_summary()}; torch threads {args.threads}; load {load_average()}")
    model = load_model(args.model)
    settings = {"recommended " + str(DEMO_AUTO_SETTINGS): DEMO_AUTO_SETTINGS, "SAM defaults": {}}
    if args.tune:
        settings["tuned here"] = tune(model, args.tune, args.precision)
    rows = {}
    for i in range(args.images):
        image, truth = make_nuclei_2d((256, 256), seed=TEST_SEEDS + i)
        for name, s in settings.items():
            gen = AutomaticMaskGenerator(SamPredictor(model, precision=args.precision), **s)
            t = time.perf_counter()
            labels = masks_to_labels(gen.generate(image), truth.shape)[0]
            _score(rows, name[:34], truth, labels, time.perf_counter() - t)
        t = time.perf_counter()
        labels = otsu_watershed(image)
        _score(rows, "Otsu + watershed (scikit-image)", truth, labels, time.perf_counter() - t)
    _print(rows, f"image (2D, {args.images} images 256x256)")
    rows = {}
    for i in range(args.stacks):
        stack, truth = make_nuclei_3d((12, 128, 128), n_objects=(8, 16), seed=TEST_SEEDS + i)
        gen = AutomaticMaskGenerator(SamPredictor(model, precision=args.precision), **DEMO_AUTO_SETTINGS)
        t = time.perf_counter()
        labels = segment_stack(stack, gen, min_z_extent=2).labels
        _score(rows, "demo, recommended, linked in z", truth, labels, time.perf_counter() - t)
        t = time.perf_counter()
        labels = otsu_watershed(stack)
        _score(rows, "Otsu + watershed 3D", truth, labels, time.perf_counter() - t)
    if rows:
        _print(rows, f"stack (3D, {args.stacks} stacks 12x128x128)")


if __name__ == "__main__":
    main()
