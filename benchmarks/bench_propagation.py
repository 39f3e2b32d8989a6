"""Propagating one object through a stack whose embeddings are already cached.

Part 1 (decoder-bound speed): for vit_t and vit_b with random weights, the
embeddings of a 50-slice stack are put into a disk cache (random features:
the image encoder is not what is measured), then one object is propagated
from slice 0 through the stack with SAM's prompt encoder and mask decoder on
the CPU. Random weights give arbitrary masks, so the walk is told not to stop
on low IoU; it prints slices walked, seconds and milliseconds per slice.

Part 2 (quality, needs the shipped "demo" model): a generated nuclei stack
is embedded with the demo model; for each nucleus one click on the centre of
its largest slice gives the starting mask, propagation does the rest, and
the 3D IoU against the generated truth is printed (mean, median, worst)
for the default prompt, with the mask logits added, and with the
area-regrowth stop (max_regrowth=0.25).

    python benchmarks/bench_propagation.py [--slices 50] [--size 512] [--threads 2] [--skip-speed] [--skip-quality]
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _machine import load_average  # benchmarks/_machine.py
from napari_sam.model import SamPredictor, build_sam, load_model
from napari_sam.model.embedding import ImageEmbedding
from napari_sam.synthetic import make_nuclei_3d
from napari_sam.volume import EmbeddingStore, StackEmbeddings, embed_stack
from napari_sam.geometry import interior_point
from napari_sam.volume.propagate import SamSliceSegmenter, propagate


def speed(model_type: str, slices: int, size: int, folder: Path) -> None:
    torch.manual_seed(0)
    model = build_sam(model_type).eval()
    model.model_name, model.checkpoint_sha256 = f"{model_type}-random", "0" * 64  # so the cache accepts it
    predictor = SamPredictor(model, device="cpu")
    stack, labels = make_nuclei_3d((slices, size, size), n_objects=(20, 40), seed=1, dtype=np.uint16)
    store = EmbeddingStore(folder / model_type)
    fill = StackEmbeddings(predictor, stack, store)
    gen = torch.Generator().manual_seed(0)
    h, w = (int(round(s * model.image_size / size)) for s in (size, size))
    for i in range(slices):
        features = torch.randn((1, 256, model.embedding_size, model.embedding_size), generator=gen)
        key = fill.key(i)
        store.put(key, ImageEmbedding(features, (size, size), (h, w), key.model_id, key.preprocessing, key.precision))

    embeddings = StackEmbeddings(predictor, stack, store)  # as on re-opening: everything from the disk cache
    start_mask = np.zeros((size, size), bool)
    start_mask[size // 2 - 40 : size // 2 + 40, size // 2 - 30 : size // 2 + 30] = True
    segmenter = SamSliceSegmenter(embeddings)
    start = time.perf_counter()
    result = propagate(segmenter, {0: start_mask}, slices, iou_threshold=0.0, prompt=("box", "point", "mask"))
    seconds = time.perf_counter() - start
    assert embeddings.computed == 0
    walked = len(result.propagated_slices)
    stop = [s.describe() for s in result.stops if s.direction > 0][0]
    print(f"{model_type}: {walked} slices propagated in {seconds:.2f} s = {1000 * seconds / max(walked, 1):.0f} ms "
          f"per slice (box + point + mask prompt, embeddings read from the disk cache); {stop}")


def quality(folder: Path) -> None:
    try:
        model = load_model("demo", device="cpu")
    except (ValueError, OSError, RuntimeError) as err:
        print(f"quality: the demo model is not available ({err}); 3D IoU not measured")
        return
    predictor = SamPredictor(model, device="cpu")
    stack, labels = make_nuclei_3d((32, 256, 256), n_objects=(12, 16), seed=7, dtype=np.uint16)
    start = time.perf_counter()
    embeddings = StackEmbeddings(predictor, stack, EmbeddingStore(folder / "demo"))
    embed_stack(predictor, embeddings)
    print(f"demo: embedded {len(stack)} slices {stack.shape[1]}x{stack.shape[2]} in {time.perf_counter() - start:.1f} s")
    variants = [
        (("box", "point"), None),
        (("box", "point", "mask"), None),
        (("box", "point"), 0.25),
    ]
    for prompt, regrowth in variants:
        ious = []
        for label in np.unique(labels)[1:]:
            truth = labels == label
            z = int(np.argmax(truth.sum(axis=(1, 2))))
            x, y = interior_point(truth[z])  # the user's click on the nucleus
            predictor.set_embedding(embeddings.get(z))
            masks, scores, low = predictor.predict(point_coords=[[x, y]], point_labels=[1], multimask_output=True)
            best = int(np.argmax(scores))
            if not masks[best].any():
                ious.append(0.0)
                continue
            result = propagate(
                SamSliceSegmenter(embeddings), {z: masks[best]}, len(stack),
                annotation_logits={z: low[best : best + 1]}, prompt=prompt, max_regrowth=regrowth,
            )
            ious.append((result.mask & truth).sum() / (result.mask | truth).sum())
        ious = np.array(ious)
        print(f"demo, prompt {'+'.join(prompt)}, max_regrowth {regrowth}: 3D IoU over {len(ious)} nuclei from one click each: "
              f"mean {ious.mean():.3f}, median {np.median(ious):.3f}, worst {ious.min():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=50)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", nargs="+", default=["vit_t", "vit_b"])
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU, {torch.get_num_threads()} threads, load average {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_speed:
            for model_type in args.models:
                speed(model_type, args.slices, args.size, Path(tmp))
        if not args.skip_quality:
            quality(Path(tmp))


if __name__ == "__main__":
    main()
