"""``napari-sam-annotator segment``: segment everything in images and stacks, without a display.

Usage::

    napari-sam-annotator segment a.tif b.tif --model demo --out results/ [--points-per-side 24 ...]

Each input (a 2D image, an RGB image, or a 3D stack; TIFF or .npy) gives
``OUT/NAME.labels.tif`` (uint32, 0 = background; stacks linked through z) and
``OUT/NAME.objects.csv`` (one row per object). Both are written to a
temporary name and renamed when complete, the table first and the labels
last, so an input whose labels file exists is finished and skipped when the
command runs again; a half-written output never carries the final name.
Embeddings go through the embedding cache (``--cache``), so a second run
with other thresholds encodes nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

# The generator's settings on the command line: (flag, type); defaults come from the model's recommendation.
_SETTINGS = [("points_per_side", int), ("points_per_batch", int), ("pred_iou_thresh", float),
             ("stability_score_thresh", float), ("stability_score_offset", float), ("box_nms_thresh", float),
             ("crop_n_layers", int), ("crop_nms_thresh", float), ("crop_overlap_ratio", float),
             ("crop_n_points_downscale_factor", int), ("min_mask_region_area", int)]


def add_segment_command(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="segment everything (SAM's automatic mask generator) in 2D images and 3D stacks",
        description="Prompt SAM with a grid of points and keep the confident, stable masks; write a uint32 label "
        "TIFF and a CSV table of objects per input. Finished inputs are skipped when run again.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, help="2D images or 3D stacks (.tif/.tiff or .npy)")
    parser.add_argument("--out", type=Path, required=True, help="folder for NAME.labels.tif and NAME.objects.csv")
    parser.add_argument("--model", default="demo", help="model name (demo, vit_t, vit_b, ...) or checkpoint file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps (default: auto)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"), help="model precision")
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache folder (default: the per-user cache)")
    parser.add_argument("--no-cache", action="store_true", help="keep embeddings in memory only")
    parser.add_argument("--voxel-size", type=float, nargs="+", default=None, metavar="SIZE",
                        help="voxel size (z y x for stacks, y x for images), written into the labels TIFF")
    parser.add_argument("--link-iou", type=float, default=0.3, help="stacks: overlap (IoU) that links objects of neighbouring slices")
    parser.add_argument("--min-z-extent", type=int, default=1, help="stacks: remove objects spanning fewer slices")
    parser.add_argument("--overwrite", action="store_true", help="segment inputs whose outputs already exist again")
    for name, kind in _SETTINGS:
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help=f"generator setting {name} (default: the model's recommended value)")
    parser.add_argument("--quiet", action="store_true", help="print only errors and the summary")
    parser.set_defaults(func=run_segment)
    return parser


def run_segment(args: argparse.Namespace, out=None) -> int:
    out = sys.stderr if out is None else out

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    from ..model import CheckpointError, DownloadError, load_model
    from ..volume.cli import read_stack_file
    from .generator import AutomaticMaskGenerator
    from .recommended import recommended_settings

    try:
        _check_out(args.out)
        for path in args.inputs:
            if not Path(path).is_file():
                raise ValueError(f"the input {path} does not exist or is not a file")
    except (ValueError, OSError) as err:
        say(f"error: {_one_line(err)}")
        return EXIT_BAD_INPUT
    try:
        model = load_model(args.model, device=args.device)
        chosen = {name: getattr(args, name) for name, _ in _SETTINGS if getattr(args, name) is not None}
        settings = {**recommended_settings(model, args.model), **chosen}
        generator = AutomaticMaskGenerator(model, source=_source(args), precision=args.precision, **settings)
    except (ValueError, TypeError, CheckpointError, DownloadError) as err:
        say(f"error: {_one_line(err)}")
        return EXIT_BAD_INPUT
    except (OSError, MemoryError) as err:
        say(f"error: cannot load the model {args.model}: {_one_line(err) or type(err).__name__}")
        return EXIT_FAILED

    done = skipped = failed = 0
    start = time.perf_counter()
    for path in args.inputs:
        name = Path(path).name.split(".")[0]
        labels_path, table_path = args.out / f"{name}.labels.tif", args.out / f"{name}.objects.csv"
        if labels_path.exists() and table_path.exists() and not args.overwrite:
            skipped += 1
            if not args.quiet:
                say(f"{path}: already segmented ({labels_path}), skipped")
            continue
        try:
            image = np.asarray(read_stack_file(path))
            _check_voxel_size(args.voxel_size, image)
            labels, table = _segment(image, generator, args, say)
            _write_table(table_path, table)
            _write_labels(labels_path, labels, args.voxel_size)
        except KeyboardInterrupt:
            say(f"interrupted at {path}; finished inputs are kept: run again to resume")
            return EXIT_INTERRUPTED
        except (ValueError, TypeError) as err:
            say(f"error: {path}: {_one_line(err)}")
            failed += 1
            continue
        except (OSError, MemoryError) as err:
            what = "out of memory" if isinstance(err, MemoryError) else "cannot read or write"
            say(f"error: {path}: {what}: {_one_line(err) or type(err).__name__}")
            failed += 1
            continue
        done += 1
        say(f"{path}: {len(table)} objects -> {labels_path}")
    say(f"done: {done} segmented, {skipped} skipped, {failed} failed in {time.perf_counter() - start:.1f} s")
    return EXIT_OK if failed == 0 else EXIT_FAILED


def _segment(image: np.ndarray, generator, args, say):
    from .labels import masks_to_labels, object_table
    from .stack import segment_stack

    is_rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    if image.ndim == 2 or is_rgb:
        records = generator.generate(image)
        labels, table = masks_to_labels(records, image.shape[:2])
        if not records:
            say("  no masks passed the thresholds: the labels are empty (lower --pred-iou-thresh or "
                "--stability-score-thresh)")
        return labels, table
    if image.ndim != 3:
        raise ValueError(f"the image has shape {image.shape}: give a 2D image, an RGB image or a 3D stack "
                         "(for more axes save one stack per file)")

    def progress(done: int, total: int) -> None:
        if not args.quiet and done:
            say(f"  [{done}/{total}] slices")

    result = segment_stack(image, generator, link_iou=args.link_iou, min_z_extent=args.min_z_extent,
                           progress=progress)
    return result.labels, object_table(result.labels)


def _check_voxel_size(voxel_size, image) -> None:
    axes = image.ndim - (image.ndim == 3 and image.shape[-1] in (3, 4))
    if voxel_size is not None and len(voxel_size) != axes:
        raise ValueError(f"--voxel-size has {len(voxel_size)} values but this image has {axes} axes "
                         f"(shape {image.shape}); give {'z y x' if axes == 3 else 'y x'}")
    if voxel_size is not None and min(voxel_size) <= 0:
        raise ValueError(f"--voxel-size must be positive, got {voxel_size}")


def _source(args):
    from ..embeddings import EmbeddingSource
    from ..volume.store import EmbeddingStore

    return EmbeddingSource(store=None if args.no_cache else EmbeddingStore(args.cache))


def _check_out(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".napari-sam-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write into --out {folder}: {err.strerror or err}") from None


def _write_table(path: Path, table: list[dict]) -> None:
    from ..atomic import write_atomically
    from .labels import TABLE_COLUMNS

    columns = list(table[0]) if table else list(TABLE_COLUMNS)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(table)
    write_atomically(path, lambda f: f.write(text.getvalue().encode()), temp_prefix=f".{path.name}.")


def _write_labels(path: Path, labels: np.ndarray, voxel_size) -> None:
    from ..writers import write_labels_tiff

    attributes = {}
    if voxel_size is not None:
        if len(voxel_size) != labels.ndim:
            raise ValueError(f"--voxel-size has {len(voxel_size)} values but the labels have {labels.ndim} axes")
        attributes["scale"] = voxel_size
    write_labels_tiff(str(path), labels.astype(np.uint32), attributes)


def _one_line(message) -> str:
    return " ".join(str(message).split())
