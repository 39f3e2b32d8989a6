"""Propagate all only (the quality part of bench_propagation.py, short): the default against options, same run.

    python benchmarks/bench_propagate_all.py [--seeds 7 3 11] [--cache DIR] [--variants default lockstep]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _machine import cpu_summary
from _propagation_cases import Case, Timer, all_at_once, why
from napari_sam.model import SamPredictor, load_model

VARIANTS = {"default": {}, "before (no regrowth stop)": {"max_regrowth": None}, "lockstep": {"together": True},
            "regrow0.5": {"max_regrowth": 0.5}, "regrow1.0": {"max_regrowth": 1.0}, "regrow0.3": {"max_regrowth": 0.3}, "regrow2.0": {"max_regrowth": 2.0}, "regrow1.5": {"max_regrowth": 1.5},
            "+logits": {"prompt": ("box", "point", "negatives", "mask")}, "+vanish5%": {"vanish_fraction": 0.05},
            "lock+rg0.5": {"together": True, "max_regrowth": 0.5}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 3, 11])
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(cpu_summary())
    predictor = SamPredictor(load_model("demo", device="cpu"), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.cache or Path(tmp)
        cases = [Case(predictor, seed, folder / "demo") for seed in args.seeds]
        for name in args.variants:
            timer, ious, labels = Timer(), {}, {}
            start = time.perf_counter()
            for case in cases:
                found, labels[case.seed] = all_at_once(case, timer, **VARIANTS[name])
                ious.update({(case.seed, oid): v for oid, v in found.items()})
            values = np.array([v[0] for v in ious.values()])
            print(f"{name:27s} mean {values.mean():.3f} median {np.median(values):.3f} worst {values.min():.3f} "
                  f"below 0.5: {(values < 0.5).sum()}  ({time.perf_counter() - start:.0f} s)")
            for (seed, oid), (iou, _) in sorted(ious.items(), key=lambda kv: kv[1][0])[:5]:
                case = next(c for c in cases if c.seed == seed)
                print(f"    stack {seed} nucleus {oid}: {iou:.3f}: {why(case, oid, labels[seed] == oid)}")


if __name__ == "__main__":
    main()
