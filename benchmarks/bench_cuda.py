"""The engine on a CUDA GPU: agreement with the CPU and with the reference, and timings.

For vit_b and vit_t (random weights, a 1024 x 1024 RGB image): our fp32
embedding on the GPU against the same on the CPU (relative error of the
embedding and of the mask logits, share of mask pixels that agree), bf16
against fp32 on the GPU, then the time of one embedding (fp32, bf16) and of
one click -> 3 masks. With the official ``segment-anything`` installed, vit_b
is also compared with it on the GPU (same weights). Needs a CUDA GPU.

    python benchmarks/bench_cuda.py
"""

import time

import numpy as np
import torch

from napari_sam.model import SamPredictor, build_sam
from napari_sam.model.build import PRESETS


def best_time(fn, repeats=5):
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def rel(a, b):
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    return float((a - b).norm() / b.norm())


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this benchmark measures the GPU path")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    image = np.random.default_rng(0).integers(0, 255, (1024, 1024, 3), dtype=np.uint8)
    click = dict(point_coords=[[500, 400]], point_labels=[1])
    for model_type in ("vit_b", "vit_t"):
        torch.manual_seed(0)
        model = build_sam(PRESETS[model_type]).eval()
        cpu = SamPredictor(model, device="cpu", precision="fp32")
        cpu.set_image(image)
        cpu_masks, _, cpu_logits = cpu.predict(**click)
        gpu = SamPredictor(model, device="cuda", precision="fp32")
        gpu.set_image(image)
        masks32, iou32, logits32 = gpu.predict(**click)
        bf16 = SamPredictor(model, device="cuda", precision="bf16")
        bf16.set_image(image)
        masks16, iou16, _ = bf16.predict(**click)
        e32 = gpu.get_image_embedding().float().cpu()
        print(
            f"{model_type}: GPU fp32 vs CPU: embedding rel. error {rel(e32, cpu.get_image_embedding()):.1e}, "
            f"logits {rel(logits32, cpu_logits):.1e}, mask pixels agree {np.mean(masks32 == cpu_masks):.5f}; "
            f"GPU bf16 vs fp32: embedding {rel(bf16.get_image_embedding().cpu(), e32):.1e}, "
            f"mask pixels agree {np.mean(masks16 == masks32):.5f}, IoU predictions within {np.abs(iou16 - iou32).max():.1e}"
        )
        t32 = best_time(lambda: gpu.set_image(image))
        t16 = best_time(lambda: bf16.set_image(image))
        tclick = best_time(lambda: gpu.predict(**click), 20)
        print(f"{model_type}: embedding fp32 {t32 * 1000:.1f} ms, bf16 {t16 * 1000:.1f} ms; one click -> 3 masks {tclick * 1000:.1f} ms")
        if model_type == "vit_b":
            try:
                from segment_anything import SamPredictor as ReferencePredictor
                from segment_anything import sam_model_registry
            except ImportError:
                print("vit_b: segment-anything not installed, no reference comparison")
                continue
            ref = sam_model_registry["vit_b"]().eval()
            ref.load_state_dict(model.state_dict())
            ref_predictor = ReferencePredictor(ref.cuda())
            ref_predictor.set_image(image)
            print(
                f"vit_b: ours (GPU fp32) vs reference (GPU fp32): embedding rel. error "
                f"{rel(e32, ref_predictor.get_image_embedding().cpu()):.1e}; reference embedding "
                f"{best_time(lambda: ref_predictor.set_image(image)) * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main()
