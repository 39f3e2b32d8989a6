"""Peak memory of one large plane: preparing it for the encoder (set_image) and one click -> 3 masks (predict).

Each figure comes from a fresh subprocess (``resource.getrusage`` high-water
mark): the peak resident memory while the step ran, minus the peak before it
(model built, plane in memory, the step warmed up on a small image). It is
printed in MB and per megapixel of the plane; the plane itself (uint16, 2
bytes per pixel) is part of the baseline, not of the figures. ``full path``
is SAM's post-processing as the predictor did it before: both upsampling
steps on whole float32 planes, then the threshold.

    python benchmarks/bench_large_plane.py                        # 5000 and 10000 px squares
    python benchmarks/bench_large_plane.py --sizes 20000 --limit-gb 6

``--limit-gb`` also runs predict under that address-space limit
(RLIMIT_AS) and prints how it ends. The model is a tiny random SAM at
1024 px input, so the encoder adds little; memory of the post-processing
does not depend on the model size.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

PHASES = ("set_image", "predict", "full path")


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _child(size: int, phase: str, limit_gb: float | None) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from napari_sam.model.build import build_sam, tiny_config
    from napari_sam.model.embedding import ImageEmbedding
    from napari_sam.model.image import resized_shape
    from napari_sam.model.predictor import SamPredictor

    torch.manual_seed(0)
    model = build_sam(tiny_config(1024)).eval()
    predictor = SamPredictor(model, device="cpu", precision="fp32")
    side = model.image_size
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 4000, (size, size), dtype=np.uint16)
    prompt = dict(point_coords=np.array([[size / 2, size / 2]]), point_labels=np.array([1]))

    def embedding(h, w):
        features = torch.randn(1, model.prompt_encoder.embed_dim, *model.prompt_encoder.image_embedding_size)
        return ImageEmbedding(features, (h, w), resized_shape(h, w, side), model.weights_id, "bench")

    def full_path(prompt=prompt):
        # SAM's post-processing on whole planes (what predict did before it worked in bands)
        emb = predictor.embedding
        (h, w), (H, W) = emb.input_size, emb.original_size
        prompts = predictor._prepare_prompts(emb, prompt["point_coords"], prompt["point_labels"], None, None)
        low_res, _ = predictor._decode(emb, *prompts, multimask_output=True)
        x = F.interpolate(low_res, (side, side), mode="bilinear", align_corners=False)[..., :h, :w]
        x = F.interpolate(x, (H, W), mode="bilinear", align_corners=False)
        return (x > 0)[0].numpy()

    # Warm-up on a small plane: the encoder's and decoder's own memory goes into the baseline.
    small = dict(point_coords=np.array([[100.0, 100.0]]), point_labels=np.array([1]))
    predictor.set_image(plane[:256, :256])
    predictor.set_embedding(embedding(256, 256))
    predictor.predict(**small)
    full_path(small)
    if phase != "set_image":
        predictor.set_embedding(embedding(size, size))
    if limit_gb is not None:
        limit = int(limit_gb * 1e9)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    before = _peak_bytes()
    start = time.perf_counter()
    try:
        if phase == "set_image":
            predictor.set_image(plane)
        elif phase == "predict":
            masks, _, _ = predictor.predict(**prompt)
            assert masks.shape == (3, size, size)
        else:
            full_path()
        outcome = "ok"
    except MemoryError as err:
        outcome = f"MemoryError: {err}"
    except RuntimeError as err:
        outcome = f"RuntimeError: {' '.join(str(err).split())[:160]}"
    return {"extra": _peak_bytes() - before, "seconds": time.perf_counter() - start, "outcome": outcome}


def _run(size: int, phase: str, limit_gb: float | None) -> dict:
    command = [sys.executable, __file__, "--child", str(size), phase]
    if limit_gb is not None:
        command += ["--limit-gb", str(limit_gb)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"extra": 0, "seconds": 0.0, "outcome": f"exit {done.returncode}: {done.stderr.strip()[-160:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    return f"{name}, avx512_bf16: {'avx512_bf16' in info}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 10000], help="sides of the square planes")
    parser.add_argument("--limit-gb", type=float, default=None, help="also run predict under this address-space limit")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "PHASE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(int(args.child[0]), args.child[1], args.limit_gb)))
        return
    import torch

    print(f"machine: {_cpu()}, torch {torch.__version__}")
    print(f"{'plane':>13s} {'step':>10s} {'peak extra':>11s} {'per MP':>9s} {'time':>7s}")
    for size in args.sizes:
        mp = size * size / 1e6
        for phase in PHASES:
            r = _run(size, phase, None)
            note = "" if r["outcome"] == "ok" else f"  {r['outcome']}"
            print(f"{size:>6d}x{size:<6d} {phase:>10s} {r['extra'] / 1e6:>8.0f} MB {r['extra'] / 1e6 / mp:>6.2f} MB "
                  f"{r['seconds']:>6.2f}s{note}")
        if args.limit_gb is not None:
            r = _run(size, "predict", args.limit_gb)
            print(f"{size:>6d}x{size:<6d} predict under a {args.limit_gb:g} GB limit: {r['outcome']}")


if __name__ == "__main__":
    main()
