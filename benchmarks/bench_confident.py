"""How often a "confident" proposal is right: the rule of napari_sam.session.confidence on generated nuclei.

The demo model proposes objects at its recommended settings (as SAM Everything
shows them). Each proposal shown is scored by its best IoU with a true
nucleus; "right" means IoU >= 0.9, the simulated annotator's acceptance bar.
Per rule: precision (right among confident), the share of proposals called
confident, and the share of true nuclei covered by a right confident one (what
one key press does). ``--choose`` picks the rule on tuning images (seeds
disjoint from the test seeds): the one calling most proposals confident at
precision >= 95 %, then reports it on the test images.

    python benchmarks/bench_confident.py --images 12 --choose 12

Target: precision ~95 % on held-out images at the default rule.
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
from napari_sam.auto.metrics import iou_matrix  # noqa: E402
from napari_sam.model import SamPredictor, load_model  # noqa: E402
from napari_sam.model.registry import DEMO_AUTO_SETTINGS  # noqa: E402
from napari_sam.session.confidence import ConfidenceRule, agreement  # noqa: E402
from napari_sam.synthetic import make_nuclei_2d  # noqa: E402

TEST_SEEDS, TUNE_SEEDS = 5000, 7000  # as bench_auto_quality.py
RIGHT = 0.9


def proposals_of(generator, seed):
    """Per shown proposal: (predicted IoU, stability, agreement, best IoU with a true nucleus); and the nuclei count."""
    image, truth = make_nuclei_2d((256, 256), seed=seed)
    decoded = generator.decode_grid(image)
    records = generator.filter(decoded)
    labels, table = masks_to_labels(records, truth.shape)
    iou = iou_matrix(truth, labels)  # true objects x shown proposals
    rows = []
    for k, row in enumerate(table):
        r = records[row["mask_index"]]
        best = float(iou[:, k].max()) if iou.shape[0] else 0.0
        match = int(iou[:, k].argmax()) if iou.shape[0] else -1
        rows.append((r["predicted_iou"], r["stability_score"], agreement(r, decoded), best, seed * 1000 + match))
    return rows, int(iou.shape[0])


def score(rows, n_true, rule):
    confident = [r for r in rows if rule.is_confident({"predicted_iou": r[0], "stability_score": r[1]}, r[2])]
    right = [r for r in confident if r[3] >= RIGHT]
    precision = len(right) / len(confident) if confident else float("nan")
    return precision, len(confident) / max(len(rows), 1), len({r[4] for r in right}) / max(n_true, 1), len(confident)


def collect(generator, seeds):
    rows, n_true = [], 0
    for seed in seeds:
        got, n = proposals_of(generator, seed)
        rows += got
        n_true += n
    return rows, n_true


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--choose", type=int, default=0, metavar="N", help="choose the rule on N tuning images first")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_summary()}; torch threads {args.threads}; load {load_average()}")
    generator = AutomaticMaskGenerator(SamPredictor(load_model("demo"), precision="fp32"), **DEMO_AUTO_SETTINGS)
    rules = {"default " + str(ConfidenceRule()): ConfidenceRule()}
    if args.choose:
        t = time.perf_counter()
        rows, n_true = collect(generator, range(TUNE_SEEDS, TUNE_SEEDS + args.choose))
        print(f"tuning: {len(rows)} proposals, {n_true} nuclei, {np.mean([r[3] >= RIGHT for r in rows]):.3f} right "
              f"({time.perf_counter() - t:.0f} s)")
        found = []
        for iou, stab, agree in itertools.product((0.7, 0.8, 0.85, 0.88, 0.9, 0.93), (0.9, 0.92, 0.93, 0.95),
                                                  (1, 2, 4, 6, 8, 10)):
            rule = ConfidenceRule(min_predicted_iou=iou, min_stability=stab, min_agreement=agree)
            precision, share, covered, n = score(rows, n_true, rule)
            if n >= 10:
                found.append((precision, share, covered, rule))
        ok = sorted([f for f in found if f[0] >= 0.95], key=lambda f: -f[1])
        for precision, share, covered, rule in ok[:6]:
            print(f"tuning: precision {precision:.3f} confident {share:.3f} nuclei covered {covered:.3f}  {rule}")
        if ok:
            rules["chosen on tuning images"] = ok[0][3]
    rules["no agreement asked"] = ConfidenceRule(min_agreement=1)
    rules["no agreement, stricter scores"] = ConfidenceRule(min_predicted_iou=0.9, min_stability=0.95, min_agreement=1)
    rules["everything shown"] = ConfidenceRule(0.0, 0.0, 1)
    rows, n_true = collect(generator, range(TEST_SEEDS, TEST_SEEDS + args.images))
    print(f"test: {args.images} images 256x256, {len(rows)} proposals shown, {n_true} nuclei")
    for name, rule in rules.items():
        precision, share, covered, n = score(rows, n_true, rule)
        print(f"test {name}: precision (IoU >= {RIGHT}) {precision:.3f} of {n} confident; confident share "
              f"{share:.3f}; nuclei done by one key {covered:.3f}")


if __name__ == "__main__":
    main()
