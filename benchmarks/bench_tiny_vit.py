"""Time MobileSAM's TinyViT encoder at 1024x1024 on the CPU: reference vs ours.

Prints the best of a few runs for the reference package's encoder (fp32),
ours in fp32 and ours converted to bf16, plus the bf16 relative error against
our fp32 output. Runs are interleaved so that load from other processes hits
all variants alike; next to the wall time, the process CPU time (all threads)
is shown, which other processes on a busy machine disturb less.

    python benchmarks/bench_tiny_vit.py [--threads 2] [--repeats 3] [--no-reference]
"""

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

from napari_sam.model.tiny_vit import TinyViT


def _reference_encoder():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import reference

    return reference.mobile_sam().sam_model_registry["vit_t"]().image_encoder


def _time_once(model, x) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    model(x)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference encoder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    ours = TinyViT().eval()
    ours_bf16 = copy.deepcopy(ours).to(torch.bfloat16)
    variants = {"ours fp32": (ours, torch.float32), "ours bf16": (ours_bf16, torch.bfloat16)}
    if not args.no_reference:
        ref = _reference_encoder()
        ref.load_state_dict(ours.state_dict())
        variants = {"reference fp32": (ref.eval(), torch.float32), **variants}

    x = torch.randn(1, 3, 1024, 1024)
    best = {name: float("inf") for name in variants}
    best_cpu = dict(best)
    outputs = {}
    with torch.inference_mode():
        for name, (model, dtype) in variants.items():  # warm-up (and caches)
            outputs[name] = model(x.to(dtype)).float()
        for _ in range(args.repeats):
            for name, (model, dtype) in variants.items():
                wall, cpu = _time_once(model, x.to(dtype))
                best[name] = min(best[name], wall)
                best_cpu[name] = min(best_cpu[name], cpu)

    print(f"TinyViT 1024x1024, batch 1, {args.threads} threads, best of {args.repeats}")
    for name, seconds in best.items():
        print(f"  {name:15s} {seconds:7.3f} s wall   {best_cpu[name]:7.3f} s CPU")
    if "reference fp32" in best:
        for name in ("ours fp32", "ours bf16"):
            print(f"  speed-up {name}: {best['reference fp32'] / best[name]:.2f}x")
    ref_out = outputs["ours fp32"]
    err = (outputs["ours bf16"] - ref_out).norm() / ref_out.norm()
    print(f"  bf16 relative error vs ours fp32: {err.item():.2e}")


if __name__ == "__main__":
    main()
