"""``napari-sam-annotator segment``: segment everything in files, folders and OME-Zarr images, here or on a cluster.

Usage::

    napari-sam-annotator segment DATA/ 'more/*.tif' plate.ome.zarr --out results/ [--workers 2 | --scheduler ADDRESS]
                                 [--split slices|files] [--memory-limit 4GB]

The steps: find the inputs (:mod:`.inputs`), check the options and the
results folder before any work, then run one job per input (:mod:`.job`)
here or as dask tasks (:mod:`.runners`), print a line per input as it ends,
and a summary: done, skipped, failed with each reason. Exit status 0 when
nothing failed, 1 when something did, 2 when nothing could start (a bad
option, no input, no scheduler), 130 after Ctrl-C (run again to resume).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, one_line, reporter
from .job import JobSpec, Result

# The generator's settings on the command line: (flag, type); defaults come from the model's recommendation.
SETTINGS = [("points_per_side", int), ("points_per_batch", int), ("pred_iou_thresh", float),
            ("stability_score_thresh", float), ("stability_score_offset", float), ("box_nms_thresh", float),
            ("crop_n_layers", int), ("crop_nms_thresh", float), ("crop_overlap_ratio", float),
            ("crop_n_points_downscale_factor", int), ("min_mask_region_area", int), ("nms_score", str),
            ("merge_duplicates_iou", float), ("gap_fill_iou_thresh", float), ("mask_threshold", float),
            ("nms_convexity", float)]


def add_segment_command(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "segment",
        help="segment everything (SAM's automatic mask generator) in images, stacks, folders and OME-Zarr",
        description="Prompt SAM with a grid of points and keep the confident, stable masks; per input write labels "
        "(a uint32 TIFF, or for OME-Zarr inputs an OME-Zarr labels group with a pyramid: y and x halved by nearest "
        "neighbour down to 256 px) and a CSV table of objects into --out. "
        "Finished inputs are skipped when run again; inputs are never written to.",
    )
    parser.add_argument("inputs", nargs="+",
                        help="TIFF (.tif/.tiff, BigTIFF) or .npy files, OME-Zarr folders, folders (searched "
                        "recursively, sub-folders kept in the output names) or quoted glob patterns ('**' recurses)")
    parser.add_argument("--out", type=Path, required=True, help="results folder (NAME.labels.tif or NAME.ome.zarr, "
                        "and NAME.objects.csv)")
    parser.add_argument("--model", default="demo", help="model name (demo, vit_t, vit_b, ...) or checkpoint file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps (default: auto)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "int8"),
                        help="model precision (auto: the fastest that passed on this machine)")
    parser.add_argument("--cache", type=Path, default=None, help="embedding cache folder (default: the per-user cache)")
    parser.add_argument("--no-cache", action="store_true", help="keep embeddings in memory only")
    parser.add_argument("--voxel-size", type=float, nargs="+", default=None, metavar="SIZE",
                        help="voxel size (z y x for stacks, y x for images) for the labels; default: what each "
                        "file records")
    parser.add_argument("--channel", type=int, default=None, help="OME-Zarr with several channels: segment this one")
    parser.add_argument("--allow-missing-chunks", action="store_true",
                        help="OME-Zarr: read missing chunk files as the fill value (for writers that leave out "
                        "empty chunks) instead of refusing the input")
    parser.add_argument("--tile", type=int, default=None, metavar="PIXELS",
                        help="planes more than twice the model's input on a side are segmented in tiles of this "
                        "size (default: the model's input; 0: never tile, shrink the plane to the model's input)")
    parser.add_argument("--halo", type=int, default=None, metavar="PIXELS",
                        help="tiles: overlap around each tile, at least the largest object's diameter "
                        "(default: from --object-diameter)")
    parser.add_argument("--object-diameter", type=float, default=None, metavar="PIXELS",
                        help="tiles: the largest object's diameter, which sets the halo (default 64)")
    parser.add_argument("--link-iou", type=float, default=0.3, help="stacks: overlap (IoU) that links objects of neighbouring slices")
    parser.add_argument("--min-z-extent", type=int, default=1, help="stacks: remove objects spanning fewer slices")
    parser.add_argument("--overwrite", action="store_true", help="segment inputs whose outputs already exist again")
    for name, kind in SETTINGS:
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help=f"generator setting {name} (default: the model's recommended value)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="run on a dask LocalCluster of N worker processes on this machine")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on an existing dask.distributed cluster (e.g. tcp://head-node:8786)")
    parser.add_argument("--split", choices=("slices", "files"), default=None,
                        help="with --workers/--scheduler: 'slices' (the default) runs each 3D stack as one task per "
                        "slice, linked through z once all are back, and each plane segmented by tiles (see --tile) "
                        "as one task per tile, stitched on this machine, so a large input uses every worker and a "
                        "lost worker costs one slice or tile; 'files' runs each input as one task")
    parser.add_argument("--memory-limit", default=None, metavar="SIZE",
                        help="with --workers: memory per worker process (e.g. 4GB; default: this machine's memory "
                        "shared out); a worker going past it is restarted and its task tried elsewhere")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="how long to wait for --scheduler to answer (default 10)")
    parser.add_argument("--quiet", action="store_true", help="print only errors and the summary")
    parser.set_defaults(func=run_segment)
    return parser


def run_segment(args: argparse.Namespace, out=None, job=None, slice_job=None, tile_job=None) -> int:
    """Handle ``segment``; ``job``, ``slice_job`` and ``tile_job`` replace :func:`.job.segment_input`,
    :func:`.slices.segment_slice` and :func:`.plane_tiles.segment_plane_tile` (tests: a worker that dies)."""
    from ..auto.settings import make_settings
    from .inputs import find_inputs
    from .job import generator_for, segment_input
    from .runners import close, connect, local_threads, run_here, run_on_cluster

    say = reporter(out)
    job = segment_input if job is None else job
    distributed = args.workers is not None or args.scheduler is not None
    # 1. Everything that can be checked before any work: inputs, results folder, settings, model name.
    try:
        items = find_inputs(args.inputs)
        _check_out(args.out, items)
        chosen = tuple((name, getattr(args, name)) for name, _ in SETTINGS if getattr(args, name) is not None)
        make_settings(**dict(chosen))
        spec = JobSpec(model=str(args.model), device=args.device, precision=args.precision, settings=chosen,
                       cache=None if args.cache is None else str(args.cache.absolute()), no_cache=args.no_cache,
                       link_iou=args.link_iou, min_z_extent=args.min_z_extent,
                       voxel_size=None if args.voxel_size is None else tuple(args.voxel_size), channel=args.channel,
                       allow_missing_chunks=args.allow_missing_chunks, overwrite=args.overwrite,
                       torch_threads=local_threads(args.workers) if args.workers else None,
                       tile=args.tile, halo=args.halo, object_diameter=args.object_diameter)
        if distributed:
            _check_model_name(spec.model)
        _check_cluster_options(args, distributed)
    except (ValueError, TypeError, OSError) as err:
        say(f"error: {one_line(err)}")
        return EXIT_BAD_INPUT

    # 2. The model here, or the cluster: a problem with either ends the run before any input.
    client = None
    try:
        if distributed:
            client = connect(args.scheduler, args.workers, args.connect_timeout, args.memory_limit)
            n = len(client.scheduler_info(n_workers=-1).get("workers", {})) if args.scheduler else args.workers
            say(f"segmenting {len(items)} inputs on {n} dask workers ({args.scheduler or 'this machine'})")
            results = run_on_cluster(client, items, spec, args.out, job=job, split=args.split or "slices",
                                     slice_job=slice_job, tile_job=tile_job)
        else:
            generator_for(spec)
            results = run_here(items, spec, args.out, None if args.quiet else say, job=job)
    except (ValueError, TypeError) as err:
        say(f"error: {one_line(err)}")
        return EXIT_BAD_INPUT
    except Exception as err:  # the model's own errors (checkpoint, download) and memory
        from ..model import CheckpointError, DownloadError

        if isinstance(err, (CheckpointError, DownloadError)):
            say(f"error: {one_line(err)}")
            return EXIT_BAD_INPUT
        if isinstance(err, (OSError, MemoryError)):
            say(f"error: cannot load the model {args.model}: {one_line(err) or type(err).__name__}")
            return EXIT_FAILED
        raise

    # 3. One line per input as it ends, then the summary.
    start, seen = time.perf_counter(), []
    try:
        for result in results:
            seen.append(result)
            _report(result, args, say)
    except KeyboardInterrupt:
        say("interrupted; finished inputs are kept: run the same command again to resume")
        return EXIT_INTERRUPTED
    finally:
        if client is not None:
            close(client)
    for line in summary(seen, items, time.perf_counter() - start):
        say(line)
    return EXIT_OK if all(r.status != "failed" for r in seen) and len(seen) == len(items) else EXIT_FAILED


def _report(result: Result, args, say) -> None:
    if result.status == "failed":
        say(f"error: {result.path}: {result.reason}")
    elif result.status == "skipped" and not args.quiet:
        say(f"{result.path}: already segmented ({result.output}), skipped")
    elif not args.quiet:
        say(f"{result.path}: {result.n_objects} objects -> {result.output} ({result.seconds:.1f} s)")


def summary(results: list[Result], items, seconds: float) -> list[str]:
    """Done, skipped and failed counts, each failure with its reason, and the inputs a full disk left unstarted."""
    count = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    lines = [f"done: {count['done']} segmented, {count['skipped']} skipped, {count['failed']} failed "
             f"in {seconds:.1f} s"]
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines.append("failed:")
        lines += [f"  {r.path}: {r.reason}" for r in failed]
    not_run = len(items) - len(results)
    if not_run:
        lines.append(f"not started: {not_run} inputs (the results disk is full); free space and run again")
    return lines


def _check_out(folder: Path, items) -> None:
    """The results folder exists or can be made, is writable, and holds none of the inputs' own files."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} exists and is not a folder")
    resolved = folder.resolve()
    for item in items:
        if item.kind == "ome-zarr" and resolved.is_relative_to(Path(item.path).resolve()):
            raise ValueError(f"--out {folder} lies inside the input {item.path}: inputs are never written to; "
                             "choose a results folder outside it")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".napari-sam-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write into --out {folder}: {err.strerror or err}") from None


def _check_cluster_options(args, distributed: bool) -> None:
    if args.split is not None and not distributed:
        raise ValueError("--split applies to runs on dask workers (--workers N or --scheduler ADDRESS); "
                         "the plain loop segments each input whole")
    if args.memory_limit is not None:
        if args.workers is None:
            raise ValueError("--memory-limit applies to --workers (a LocalCluster); an existing cluster's "
                             "workers have the memory they were started with")
        from dask.utils import parse_bytes

        try:
            if parse_bytes(args.memory_limit) <= 0:
                raise ValueError
        except (ValueError, TypeError):
            raise ValueError(f"--memory-limit {args.memory_limit!r} is not a size: give e.g. 4GB or 800MB") from None


def _check_model_name(model: str) -> None:
    """A typo in --model, found here rather than once per task on every worker."""
    from ..model.zoo import _resolve

    _resolve(model)
