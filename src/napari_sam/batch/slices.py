"""A stack on a cluster as one task per slice: a worker lost mid-stack loses only the slice it was on.

Three kinds of task per stack, chained by dask (each waits for what it is given):

1. :func:`plan_stack` opens the stack once, checks it (a damaged file, a
   wrong ``--voxel-size``) and measures the stack's intensity range: every
   slice is embedded with that one range, exactly as the plain loop does, so
   the slices do not each stretch their own contrast.
2. :func:`segment_slice` embeds and segments slice ``z`` on its own and saves
   its 2D labels into a hidden folder of the results folder
   (``OUT/.NAME.slices/KEY/z00003.npy``, written whole or not at all). A slice
   already saved there by an earlier run of the same settings on the same
   file is not segmented again: a run killed mid-stack resumes slice by slice.
3. :func:`link_stack` runs once every slice is back: it links the saved
   slices through z (``auto.stack.link_slices``, the plain loop's own linking),
   writes the labels and the table as :mod:`.outputs` does (which removes the
   hidden folder).

No task raises for a problem of its input: each hands on what went wrong,
and :func:`link_stack` turns it into the stack's :class:`~.job.Result`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .inputs import Input
from .job import JobSpec, Result, failure_reason, generator_for, voxel_size_for
from .outputs import is_finished, output_paths, slices_folder, write_results


@dataclass(frozen=True)
class StackPlan:
    """What every slice task of one stack needs; small, sent to the workers with the tasks."""

    item: Input
    n_slices: int
    intensity_range: tuple | None  # the whole stack's; None for uint8 stacks (no range needed)
    folder: str  # where the slices' labels are saved
    voxel_size: tuple | None
    ome: dict | None
    seconds: float = 0.0


@dataclass(frozen=True)
class SliceDone:
    z: int
    seconds: float = 0.0
    worker: str = ""
    reason: str = ""  # empty when the slice was saved
    disk_full: bool = False


def stack_slices(item: Input, spec: JobSpec, out) -> int:
    """How many slice tasks ``item`` makes: its slices for a stack still to segment, else 0 (one file task).

    Read on the machine that submits the tasks, once per run, from the file's
    header only; an input that cannot be opened goes as a file task, which
    reports why. With ``overwrite``, slices an earlier run saved are removed
    here (not in a task: a task may run twice).
    """
    from .readers import open_input

    if not spec.overwrite and is_finished(Path(out), item.name, item.kind):
        return 0
    if spec.overwrite:
        shutil.rmtree(slices_folder(Path(out), item.name, item.kind), ignore_errors=True)
    try:
        opened = open_input(item, channel=spec.channel, allow_missing_chunks=spec.allow_missing_chunks)
    except Exception:
        return 0
    try:
        return int(opened.data.shape[0]) if opened.axes == "zyx" and opened.data.shape[0] > 1 else 0
    finally:
        opened.close()


def plan_stack(item: Input, spec: JobSpec, out) -> StackPlan | Result:
    """Step 1 (on a worker): the stack checked and its intensity range measured, or the Result saying why not."""
    from ..model.image import stack_intensity_range
    from .readers import open_input

    start = time.perf_counter()
    try:
        opened = open_input(item, channel=spec.channel, allow_missing_chunks=spec.allow_missing_chunks)
        try:
            voxel_size = voxel_size_for(opened, spec)
            intensity_range = stack_intensity_range(np.asarray(opened.data))
            shape, ome = tuple(opened.data.shape), opened.ome
        finally:
            opened.close()
        if intensity_range is not None:
            intensity_range = tuple(float(v) for v in intensity_range)
        folder = slices_folder(Path(out), item.name, item.kind)
        # Saved slices count only for the same file, model and settings, and the same contrast.
        stat = os.stat(item.path) if Path(item.path).is_file() else None
        identity = repr((spec.model_key(), spec.channel, intensity_range, shape,
                         None if stat is None else (stat.st_size, stat.st_mtime_ns)))
        key = hashlib.sha256(identity.encode()).hexdigest()[:16]
        (folder / key).mkdir(parents=True, exist_ok=True)
    except Exception as err:
        result = Result(str(item.path), item.name, "failed", worker=f"pid {os.getpid()}")
        result.reason, result.disk_full = failure_reason(err)
        return result
    return StackPlan(item, shape[0], intensity_range, str(folder / key), voxel_size, ome,
                     time.perf_counter() - start)


def _slice_path(plan: StackPlan, z: int) -> Path:
    return Path(plan.folder) / f"z{z:05d}.npy"


def segment_slice(plan: StackPlan | Result, z: int, spec: JobSpec) -> SliceDone:
    """Step 2 (on a worker): slice ``z`` embedded with the stack's range, segmented, its 2D labels saved."""
    from ..atomic import write_atomically
    from ..auto.stack import segment_stack
    from ..volume import StackEmbeddings
    from .readers import open_input

    if isinstance(plan, Result):
        return SliceDone(z, reason="the stack could not be opened")
    start, worker = time.perf_counter(), f"pid {os.getpid()}"
    path = _slice_path(plan, z)
    if path.exists():
        return SliceDone(z, 0.0, worker)
    try:
        opened = open_input(plan.item, channel=spec.channel, allow_missing_chunks=spec.allow_missing_chunks)
        try:
            one = np.asarray(opened.data[z])[None]
        finally:
            opened.close()
        generator = generator_for(spec)
        # A stack of this one slice, embedded with the whole stack's range: the plain loop's slice, to the pixel.
        embeddings = StackEmbeddings(generator.predictor, one, source=generator.source,
                                     intensity_range=plan.intensity_range)
        labels = segment_stack(one, generator, embeddings=embeddings, link_iou=spec.link_iou).labels[0]
        write_atomically(path, lambda f: np.save(f, labels.astype(np.uint32, copy=False)),
                         temp_prefix=f".{path.name}.")
    except Exception as err:
        reason, disk_full = failure_reason(err)
        return SliceDone(z, time.perf_counter() - start, worker, f"slice {z}: {reason}", disk_full)
    return SliceDone(z, time.perf_counter() - start, worker)


def link_stack(plan: StackPlan | Result, done: list[SliceDone], spec: JobSpec, out) -> Result:
    """Step 3 (on a worker, once all slices are back): link through z, write the results, clear the slices."""
    from ..auto.labels import object_table
    from ..auto.stack import link_slices

    if isinstance(plan, Result):
        return plan
    start, item = time.perf_counter(), plan.item
    result = Result(str(item.path), item.name, "failed", worker=f"pid {os.getpid()}",
                    output=str(output_paths(Path(out), item.name, item.kind)[0]))
    seconds = plan.seconds + sum(d.seconds for d in done)
    problems = [d for d in sorted(done, key=lambda d: d.z) if d.reason]
    if problems:
        result.reason, result.disk_full = problems[0].reason, any(d.disk_full for d in problems)
        result.seconds = seconds
        return result

    def saved(z: int) -> np.ndarray:
        if not _slice_path(plan, z).exists():  # removed since its task ran (by hand): segment it here
            again = segment_slice(plan, z, spec)
            if again.reason:
                raise ValueError(again.reason)
        return np.load(_slice_path(plan, z))

    try:
        linked = link_slices(saved, plan.n_slices, link_iou=spec.link_iou, min_z_extent=spec.min_z_extent)
        table = object_table(linked.labels)
        write_results(Path(out), item.name, item.kind, linked.labels, table, plan.voxel_size, plan.ome)
    except Exception as err:
        result.reason, result.disk_full = failure_reason(err)
    else:
        result.status, result.n_objects = "done", len(table)  # write_results cleared the saved slices
    result.seconds = seconds + time.perf_counter() - start
    return result
