"""Engine speed against the reference SAM packages, same random weights, one process.

Prints the CPU, the matrix-product rates "auto" measures and what it picks;
then per model: image-embedding time of the reference (fp32) and ours
(fp32, what auto picks, and int8 where the CPU has int8 kernels), the
speed-up, and the relative errors (ours fp32 vs reference; others vs ours
fp32); then the time of
one point prompt -> 3 masks on a 1024x1024 image (SamPredictor.predict,
post-processing included).

    python benchmarks/bench_engine.py                 # vit_b and vit_t
    python benchmarks/bench_engine.py --models vit_t --repeats 5

Targets: on a CPU with AVX512-BF16, vit_b embedding >= 5x the reference fp32
(bf16 rel. error against our fp32 no worse than 6e-3); on an AVX2-only CPU
vit_b >= 3x and vit_t >= 2.5x; prompt -> masks >= 2.5x everywhere.
Embedding times are the minimum over --repeats runs (the least disturbed one); prompt times the median of
--prompt-repeats rounds in which the reference and ours take turns.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _machine import cpu_summary  # noqa: E402
import reference  # noqa: E402  (tests/reference.py: imports the reference packages)
from helpers import randomize_, rel_err, structured_rgb  # noqa: E402

from napari_sam.model.build import build_sam  # noqa: E402
from napari_sam.model.device import cpu_has_fast_bf16  # noqa: E402
from napari_sam.model.int8 import cpu_has_int8_kernels  # noqa: E402
from napari_sam.model.precision_choice import measure_speeds  # noqa: E402
from napari_sam.model.predictor import SamPredictor  # noqa: E402


def _min_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def _median_times_in_turn(fns, repeats):
    """Median seconds of each function, called in turns (one of each per round), so that a change in the
    machine's load during the run slows them alike."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times):
            t = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - t)
    return [statistics.median(spent) for spent in times]


def bench(model_type: str, repeats: int, prompt_repeats: int) -> None:
    pkg = reference.mobile_sam() if model_type == "vit_t" else reference.segment_anything()
    ref_model = randomize_(pkg.sam_model_registry[model_type](), seed=1).eval()
    ours = build_sam(model_type)
    ours.load_state_dict(ref_model.state_dict(), strict=True)
    ref = pkg.SamPredictor(ref_model)
    fp32 = SamPredictor(ours, device="cpu", precision="fp32")
    auto = SamPredictor(ours, device="cpu", precision="auto")
    image = structured_rgb(1024, 1024, seed=3)

    print(f"\n== {model_type}: image embedding, 1024x1024 ==")
    with torch.inference_mode():
        t_ref, _ = _min_time(lambda: ref.set_image(image), repeats)
    e_ref = ref.get_image_embedding()
    t_fp32, _ = _min_time(lambda: fp32.set_image(image), repeats)
    e_fp32 = fp32.get_image_embedding()
    print(f"reference fp32 : {t_ref:7.2f} s")
    print(f"ours fp32      : {t_fp32:7.2f} s   speed-up {t_ref / t_fp32:5.2f}x   rel. error vs reference {rel_err(e_fp32, e_ref):.1e}")
    others = {auto.embedding_precision: auto} if auto.embedding_precision != "fp32" else {}
    if cpu_has_int8_kernels() and "int8" not in others:
        others["int8"] = SamPredictor(ours, device="cpu", precision="int8")
    for name, predictor in others.items():
        t, _ = _min_time(lambda: predictor.set_image(image), repeats)
        err = rel_err(predictor.get_image_embedding(), e_fp32)
        print(f"ours {name:9s} : {t:7.2f} s   speed-up {t_ref / t:5.2f}x   rel. error vs ours fp32 {err:.1e}")
    print(f"ours auto      : {auto.precision_reason}")

    print(f"== {model_type}: one point -> 3 masks at 1024x1024 (median of {prompt_repeats}, taking turns) ==")
    prompt = dict(point_coords=np.array([[500.0, 400.0]]), point_labels=np.array([1]))
    auto.set_embedding(fp32.embedding)

    def ref_predict():
        with torch.inference_mode():
            return ref.predict(**prompt)

    d_ref, d_fp32, d_auto = _median_times_in_turn(
        [ref_predict, lambda: fp32.predict(**prompt), lambda: auto.predict(**prompt)], prompt_repeats)
    print(f"reference      : {d_ref * 1000:7.1f} ms")
    print(f"ours fp32      : {d_fp32 * 1000:7.1f} ms   speed-up {d_ref / d_fp32:5.2f}x")
    print(f"ours auto      : {d_auto * 1000:7.1f} ms   speed-up {d_ref / d_auto:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_b", "vit_t"], choices=["vit_b", "vit_l", "vit_h", "vit_t"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt-repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, fast bf16: {cpu_has_fast_bf16()}")
    print(cpu_summary())
    rates = measure_speeds()
    print("matrix products (2048 x 768 x 3072): " + ", ".join(f"{p} {r:.0f} GOP/s" for p, r in rates.items()))
    for model_type in args.models:
        bench(model_type, args.repeats, args.prompt_repeats)


if __name__ == "__main__":
    main()
