"""Embedding a stack once and reloading it from the disk cache.

Embeds a generated 20-slice 512x512 uint16 stack with MobileSAM (vit_t,
random weights saved to a temporary checkpoint so the cache can identify
them) on the CPU into a fresh cache folder, then reloads every slice through
a new StackEmbeddings as the annotator would on re-opening the stack
(fingerprint + preprocessing rule + read + checks), and prints the times and
the disk use per slice. Target: reloading in under 1 s.

    python benchmarks/bench_volume_cache.py [--slices 20] [--size 512] [--model vit_t] [--threads 2]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _machine import load_average  # benchmarks/_machine.py
from napari_sam.model import SamPredictor, build_sam, load_model
from napari_sam.synthetic import make_nuclei_3d
from napari_sam.volume import EmbeddingStore, StackEmbeddings, embed_stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--model", default="vit_t", help="architecture to build with random weights")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    stack, _ = make_nuclei_3d((args.slices, args.size, args.size), n_objects=(30, 60), seed=0, dtype=np.uint16)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        checkpoint = tmp / f"{args.model}-random.pt"
        torch.save(build_sam(args.model).state_dict(), checkpoint)
        model = load_model(checkpoint, device="cpu")
        predictor = SamPredictor(model, device="cpu", precision=args.precision)
        print(f"{args.model} (random weights), {args.slices} slices {args.size}x{args.size} uint16, "
              f"encoder {predictor.encoder_dtype}, {torch.get_num_threads()} threads, load average {load_average()}")

        start = time.perf_counter()
        first = embed_stack(predictor, stack, EmbeddingStore(tmp / "cache"), keep=False)
        embed_s = time.perf_counter() - start
        assert first.complete and len(first.computed) == args.slices, (first.computed, first.loaded, first.cancelled)

        # As on re-opening the stack: new objects, everything from disk (the OS file cache is warm).
        start = time.perf_counter()
        again = embed_stack(predictor, stack, EmbeddingStore(tmp / "cache"))
        reload_s = time.perf_counter() - start
        assert again.complete and len(again.loaded) == args.slices and not again.computed

        # The parts of reloading: identity (fingerprint + rule) vs reading the files.
        fresh = StackEmbeddings(predictor, stack, EmbeddingStore(tmp / "cache"), keep_in_memory=False)
        start = time.perf_counter()
        keys = [fresh.key(i) for i in range(args.slices)]
        identity_s = time.perf_counter() - start
        start = time.perf_counter()
        for k in keys:
            assert fresh.store.get(k) is not None
        read_s = time.perf_counter() - start

        used = EmbeddingStore(tmp / "cache").usage_bytes()
        print(f"embed (compute + save): {embed_s:7.2f} s  ({embed_s / args.slices:.2f} s per slice)")
        print(f"reload from the cache:  {reload_s:7.3f} s  (target < 1 s): identity {identity_s:.3f} s, "
              f"reading + checks {read_s:.3f} s")
        print(f"disk use: {used / args.slices / 2**20:.2f} MiB per slice, {used / 2**20:.1f} MiB in total")


if __name__ == "__main__":
    main()
