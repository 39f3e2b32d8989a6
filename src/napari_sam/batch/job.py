"""One input, start to finish: open it, segment it, write its results; the same on this machine or a dask worker.

:func:`segment_input` never raises for a problem of its input (a damaged
file, an odd shape, no memory, a full disk): it returns a :class:`Result`
that says why, so one bad file never stops the others. Only an interrupt
(Ctrl-C) goes through.

The model is loaded once per process and settings (:func:`generator_for`,
keyed by the :class:`JobSpec`'s model part), so a dask worker that runs a
hundred files loads it once, and a retried task on a fresh worker loads it
there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .inputs import Input
from .outputs import DiskFull, is_finished, output_paths, write_results

_GENERATORS: dict = {}  # JobSpec.model_key() -> AutomaticMaskGenerator, per process
MODEL_LOADS = {"count": 0}  # how often this process loaded a model (tests: once per worker)


@dataclass(frozen=True)
class JobSpec:
    """What every job of a run shares; small and picklable, sent to each worker with its tasks."""

    model: str = "demo"
    device: str = "auto"
    precision: str = "auto"
    settings: tuple = ()  # (name, value) pairs chosen on the command line; the rest: the model's recommendation
    cache: str | None = None  # embedding cache folder; None: the per-user one
    no_cache: bool = False
    link_iou: float = 0.3
    min_z_extent: int = 1
    voxel_size: tuple | None = None  # overrides what the files record
    channel: int | None = None
    allow_missing_chunks: bool = False
    overwrite: bool = False
    torch_threads: int | None = None  # per worker process, so that workers do not fight over the cores
    tile: int | None = None  # large planes: tile side in pixels (None: the model's input; 0: never tile)
    halo: int | None = None  # overlap kept around each tile's core (None: from the object diameter)
    object_diameter: float | None = None  # largest object, pixels: sets the halo

    def model_key(self) -> tuple:
        return (self.model, self.device, self.precision, self.settings, self.cache, self.no_cache)


@dataclass
class Result:
    path: str
    name: str
    status: str  # "done", "skipped" or "failed"
    reason: str = ""  # why it failed, on one line
    n_objects: int = 0
    seconds: float = 0.0
    disk_full: bool = False
    worker: str = field(default="")  # which process did it: "pid 1234"
    output: str = ""  # its labels file or OME-Zarr folder


def generator_for(spec: JobSpec):
    """The generator of ``spec``'s model and settings, built once per process."""
    key = spec.model_key()
    if key not in _GENERATORS:
        from ..auto.generator import AutomaticMaskGenerator
        from ..auto.recommended import recommended_settings
        from ..embeddings import EmbeddingSource
        from ..model import load_model
        from ..volume.store import EmbeddingStore

        if spec.torch_threads:
            import torch

            torch.set_num_threads(spec.torch_threads)
        model = load_model(spec.model, device=spec.device)
        MODEL_LOADS["count"] += 1
        settings = {**recommended_settings(model, spec.model), **dict(spec.settings)}
        source = EmbeddingSource(store=None if spec.no_cache else EmbeddingStore(spec.cache))
        _GENERATORS[key] = AutomaticMaskGenerator(model, source=source, precision=spec.precision, **settings)
    return _GENERATORS[key]


def segment_input(item: Input, spec: JobSpec, out, say=None) -> Result:
    """Segment ``item`` into ``out`` (see the module); ``say`` gets progress lines (None on workers)."""
    out = Path(out)
    start = time.perf_counter()
    result = Result(str(item.path), item.name, "failed", worker=f"pid {os.getpid()}",
                    output=str(output_paths(out, item.name, item.kind)[0]))
    if not spec.overwrite and is_finished(out, item.name, item.kind):
        result.status = "skipped"
        return result
    try:
        n_objects = _segment_and_write(item, spec, out, say)
    except Exception as err:
        result.reason, result.disk_full = failure_reason(err)
    else:
        result.status, result.n_objects = "done", n_objects
    result.seconds = time.perf_counter() - start
    return result


def failure_reason(err: Exception) -> tuple[str, bool]:
    """(reason on one line, disk full?) for an error met on one input: what its summary line says."""
    if isinstance(err, DiskFull):
        return str(err.strerror), True
    if isinstance(err, (ValueError, TypeError)):
        return _one_line(err), False
    if isinstance(err, MemoryError):
        detail = f" ({_one_line(err)})" if str(err) else ""
        return (f"out of memory{detail}: use a machine or dask worker with more memory, or a smaller "
                "--points-per-batch"), False
    if isinstance(err, OSError):
        return f"cannot read or write: {_one_line(err) or type(err).__name__}", False
    # A bug met on one input must not cost the others.
    return f"unexpected error: {type(err).__name__}: {_one_line(err)} (please report it)", False


def voxel_size_for(opened, spec: JobSpec):
    """The labels' voxel size: --voxel-size, else what the file records; ValueError when it does not fit."""
    spatial = opened.axes.replace("c", "")
    voxel_size = opened.voxel_size if spec.voxel_size is None else tuple(spec.voxel_size)
    if voxel_size is not None and len(voxel_size) != len(spatial):
        raise ValueError(f"--voxel-size has {len(voxel_size)} values but this image has {len(spatial)} axes "
                         f"({' '.join(spatial)}, shape {tuple(opened.data.shape)}); give "
                         f"{' '.join(spatial)}")
    if voxel_size is not None and min(voxel_size) <= 0:
        raise ValueError(f"--voxel-size must be positive, got {list(voxel_size)}")
    return voxel_size


def _segment_and_write(item: Input, spec: JobSpec, out: Path, say) -> int:
    from .readers import open_input

    # 1. Open the input lazily; damaged files are refused here, before the model is asked anything.
    opened = open_input(item, channel=spec.channel, allow_missing_chunks=spec.allow_missing_chunks)
    try:
        voxel_size = voxel_size_for(opened, spec)
        # 2. Segment: a plane as one image, a stack slice by slice with objects linked through z.
        generator = generator_for(spec)
        if opened.axes == "zyx":
            labels, table = segment_stack_input(opened.data, generator, spec, say)
        else:
            labels, table = segment_plane(opened.data, generator, say, spec)
        # 3. Write the table, then the labels, each whole or not at all.
        write_results(out, item.name, item.kind, labels, table, voxel_size, opened.ome)
    finally:
        opened.close()
    return len(table)


# A plane more than this many times the model's input on its longest side is segmented by tiles:
# shrunk to the input whole, its objects would lose more than half their size in pixels.
TILE_ABOVE = 2


def goes_by_tiles(shape, model_input: int, spec: JobSpec) -> bool:
    """Whether a plane of ``shape`` is segmented by tiles (the rule of :func:`segment_plane`, shared with a cluster)."""
    return spec.tile != 0 and (spec.tile is not None or max(int(s) for s in shape[:2]) > TILE_ABOVE * model_input)


def segment_plane(data, generator, say=None, spec: JobSpec | None = None):
    """Labels and object table of one 2D (or RGB) plane.

    A plane more than :data:`TILE_ABOVE` times the model's input on its
    longest side goes by tiles with a halo (napari_sam.tiles: read lazily
    tile by tile, objects stitched across tile borders, none cut or counted
    twice); ``spec.tile`` sets the tile (0: never tile), ``spec.halo`` or
    ``spec.object_diameter`` the halo. Other planes are segmented as one
    image, exactly as Segment Anything's generator does.
    """
    from ..auto.labels import masks_to_labels

    spec = spec or JobSpec()
    if goes_by_tiles(data.shape, int(generator.predictor.model.image_size), spec):
        return _segment_by_tiles(data, generator, spec, say)
    image = np.asarray(data)
    records = generator.generate(image, progress=_progress_lines(say, 4, "batches of grid points"))
    if not records and say is not None:
        say("  no masks passed the thresholds: the labels are empty (lower --pred-iou-thresh or "
            "--stability-score-thresh)")
    return masks_to_labels(records, image.shape[:2])


def _progress_lines(say, parts: int, what: str):
    """A progress callback that says "[done/total] what" ``parts`` times in a run, not at every step."""
    shown = set()

    def progress(done: int, total: int) -> None:
        part = parts * done // max(total, 1)
        if say is not None and done and part not in shown:
            shown.add(part)
            say(f"  [{done}/{total}] {what}")

    return progress


def _segment_by_tiles(data, generator, spec: JobSpec, say=None):
    from ..tiles import segment_tiled

    result = segment_tiled(data, generator, tile=spec.tile, halo=spec.halo, object_diameter=spec.object_diameter,
                           progress=_progress_lines(say, 10, "tiles"))
    if say is not None:
        say("  " + result.summary().replace("\n", "\n  "))
    return np.asarray(result.labels), result.table


def segment_stack_input(data, generator, spec: JobSpec, say=None):
    from ..auto.labels import object_table
    from ..auto.stack import segment_stack

    def progress(done: int, total: int) -> None:
        if say is not None and done:
            say(f"  [{done}/{total}] slices")

    result = segment_stack(data, generator, link_iou=spec.link_iou, min_z_extent=spec.min_z_extent,
                           progress=progress)
    return result.labels, object_table(result.labels)


def _one_line(message) -> str:
    return " ".join(str(message).split())
