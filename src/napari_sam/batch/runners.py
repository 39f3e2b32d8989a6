"""Running the jobs: one after the other here, or as tasks of a dask.distributed cluster.

Both runners yield each input's :class:`~.job.Result` as it finishes, and
both stop starting new inputs once one reports a full disk (every further
one would fail the same way, after segmenting for nothing).

On a cluster each input is one task, or, with ``split="slices"`` (the
command's default on a cluster), a stack is one task per slice and a last one
that links them through z (:mod:`.slices`), and a plane that the plain loop
segments by tiles is one task per tile, stitched here in raster order as the
tiles come back (:mod:`.plane_tiles`). Tasks are submitted with ``retries``;
results are written by the worker itself into the results folder (whole or
not at all, :mod:`.outputs`), so a worker that dies loses only the input,
the slice or the tile it was working on; dask gives that task to another worker, and the
run completes (a plane's tiles come back to this machine, which writes the
plane's results). A task whose workers keep dying (more than the scheduler's
``distributed.scheduler.allowed-failures``) is reported as failed with that
reason, and when dask's nanny restarted them for going past their memory
limit, the reason says so and what to do.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .inputs import Input
from .job import JobSpec, Result, segment_input

MEMORY_EVENT_WAIT_S = 3.0  # how long the cause of a worker's death is waited for (see _ran_out_of_memory)
RETRIES = 2  # a task that raised is tried this many more times (a worker's death counts separately)


def run_here(items: list[Input], spec: JobSpec, out: Path, say=None,
             job: Callable = segment_input) -> Iterator[Result]:
    """The plain loop, in this process."""
    for item in items:
        if say is not None:
            say(f"{item.path}: segmenting")
        result = job(item, spec, out, say)
        yield result
        if result.disk_full:
            return


def connect(scheduler: str | None, workers: int | None, timeout: float = 10.0, memory_limit: str | None = None):
    """A dask Client for ``--scheduler ADDRESS`` or a LocalCluster of ``workers`` processes; ValueError if none answers.

    ``memory_limit`` (LocalCluster, per worker: "4GB"; default: the machine's memory shared out): a worker
    going past it is restarted by its nanny, and its task tried again elsewhere.
    """
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as err:
            raise ValueError(
                f"no dask scheduler answers at {scheduler} within {timeout:g} s ({_one_line(err)[:120]}): check the "
                "address (e.g. tcp://head-node:8786) and that the scheduler runs there (`dask scheduler`, or your "
                "dask-jobqueue cluster); nothing was segmented") from None
        except (ValueError, TypeError) as err:
            raise ValueError(f"--scheduler {scheduler!r} is not a dask scheduler address (e.g. tcp://host:8786): "
                             f"{_one_line(err)}") from None
    if workers is None or workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR, memory_limit=memory_limit or "auto")
    client = Client(cluster)
    client._napari_sam_cluster = cluster  # closed with the client in close()
    return client


def close(client) -> None:
    cluster = getattr(client, "_napari_sam_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def local_threads(workers: int) -> int:
    """torch threads per LocalCluster worker: the machine's cores shared out, at least one each."""
    return max(1, (os.cpu_count() or 1) // workers)


def run_on_cluster(client, items: list[Input], spec: JobSpec, out: Path, job: Callable = segment_input,
                   split: str = "slices", slice_job: Callable | None = None,
                   tile_job: Callable | None = None) -> Iterator[Result]:
    """Each input as one task on ``client``'s workers; unless ``split="files"``, stacks slice by slice and
    planes that the plain loop tiles tile by tile (:mod:`.plane_tiles`, stitched here).

    Results come in the order inputs finish. ``slice_job`` and ``tile_job`` replace
    :func:`.slices.segment_slice` and :func:`.plane_tiles.segment_plane_tile` (tests: a worker that dies).
    """
    from dataclasses import replace

    from dask.distributed import as_completed

    from . import plane_tiles, slices

    if split not in ("slices", "files"):
        raise ValueError(f"split must be 'slices' or 'files', got {split!r}")
    slice_job = slices.segment_slice if slice_job is None else slice_job
    tile_job = plane_tiles.segment_plane_tile if tile_job is None else tile_job
    # Workers on other nodes start in other folders: they get absolute paths.
    out = Path(out).absolute()
    limit = _limit_of(client)  # now, while every worker is up: a dying one leaves the scheduler's list
    finals, every, tiles, side = {}, [], {}, None
    # What a stack's or a plane's result was built from (its plan, slices or tiles), let go of once the result is
    # read: a future still held is one dask recomputes when its worker dies, and a stack's slices redone after
    # its labels were written would segment them again and leave their saved copies behind.
    built_from: dict = {}
    for item in (replace(i, path=Path(i.path).absolute()) for i in items):
        tag = f"{item.name}-{os.urandom(4).hex()}"
        n = slices.stack_slices(item, spec, out) if split == "slices" else 0
        shape = plane_tiles.may_need_tiles(item, spec, out) if split == "slices" and not n else None
        if shape is not None and side is None:
            side = _model_input(client, spec, tag)
        tiling = plane_tiles.plane_tiling(shape, side, spec) if shape is not None and side else None
        # pure=False: the same input submitted by a later run is work to do again, not a cached result.
        if tiling is not None:
            plan = client.submit(plane_tiles.plan_plane, item, spec, retries=RETRIES, pure=False, key=f"plan-{tag}")
            assembly = plane_tiles.PlaneAssembly(item, plan, tiling, out)
            parts = [client.submit(tile_job, plan, tile, tiling.plane_shape, tiling.halo, spec, retries=RETRIES,
                                   pure=False, key=f"tile-{tile.index[0]}.{tile.index[1]}-{tag}") for tile in tiling]
            tiles.update((part, (assembly, position)) for position, part in enumerate(parts))
            built_from[assembly] = [plan, *parts]
            every += [plan, *parts]
            continue  # its Result comes from the assembly, once its tiles are back
        if n:
            plan = client.submit(slices.plan_stack, item, spec, str(out), retries=RETRIES, pure=False,
                                 key=f"plan-{tag}")
            parts = [client.submit(slice_job, plan, z, spec, retries=RETRIES, pure=False, key=f"slice-{z}-{tag}")
                     for z in range(n)]
            future = client.submit(slices.link_stack, plan, parts, spec, str(out), retries=RETRIES, pure=False,
                                   key=f"link-{tag}")
            built_from[future] = [plan, *parts]
            every += [plan, *parts]
        else:
            future = client.submit(job, item, spec, str(out), None, retries=RETRIES, pure=False,
                                   key=f"segment-{tag}")
        finals[future] = item
        every.append(future)
    pending = set(every)

    def let_go(done, whole) -> None:
        for f in [done, *built_from.pop(whole, ())]:
            pending.discard(f)
            f.release()

    try:
        for future in as_completed([*finals, *tiles]):
            pending.discard(future)
            if future in tiles:
                assembly = tiles[future][0]
                result = _tile_came_back(future, *tiles[future], client, limit)
                if result is None:  # its answer is taken: nothing to recompute if its worker dies now
                    future.release()
                    continue
                if result.status == "failed":  # the plane's other tiles are work for nothing
                    client.cancel([f for f, (a, _) in tiles.items() if a is assembly and f in pending])
                let_go(future, assembly)
            else:
                result = _result_of(future, finals[future], client, limit)
                let_go(future, future)
            yield result
            if result.disk_full:
                return
    finally:
        # Interrupted, disk full, or the caller stopped early: nothing more is to run.
        pending = [f for f in pending if f.status == "pending"]
        if pending:
            client.cancel(pending)


def _model_input(client, spec: JobSpec, tag: str) -> int:
    """The model's input size, asked of a worker (which loads the model it needs anyway); 0 if it cannot say:
    planes then go as file tasks, which tile them themselves and report what went wrong."""
    from . import plane_tiles

    try:
        return client.submit(plane_tiles.model_input, spec, retries=RETRIES, pure=False,
                             key=f"model-input-{tag}").result()
    except Exception:
        return 0


def _tile_came_back(future, assembly, position: int, client, limit: float) -> Result | None:
    """The plane's Result when this tile finished it or failed it; None while tiles are still to come."""
    if assembly.failed is not None:
        return None
    if future.status == "finished":
        return assembly.take(position, future.result())
    return assembly.fail(_result_of(future, assembly.item, client, limit))


def _result_of(future, item: Input, client=None, limit: float = 0.0) -> Result:
    if future.status == "finished":
        return future.result()
    if future.status == "cancelled":
        return Result(str(item.path), item.name, "failed", reason="cancelled")
    error = future.exception()
    if type(error).__name__ == "KilledWorker":
        where = _slice_of(error)
        used = _ran_out_of_memory(client, error)
        if used:
            reason = (f"the dask worker running it{where} ran out of memory and was restarted by dask, each time it "
                      f"was tried ({_use_of(used, limit)}): use fewer --workers "
                      "(each then gets more memory), a smaller --tile or --points-per-batch, or workers with more "
                      "memory (--memory-limit, or --memory of dask-jobqueue)")
        else:
            reason = (f"the dask workers running it{where} died each time it was tried (killed, or beyond their "
                      "memory limit: give the workers more memory, e.g. --memory of dask-jobqueue)")
    else:
        reason = f"{type(error).__name__}: {_one_line(error)}"
    return Result(str(item.path), item.name, "failed", reason=reason)


def _slice_of(error) -> str:
    """" (slice 3)" when the task whose workers died was one slice of a stack."""
    task = str(getattr(error, "task", "") or (error.args[0] if error.args else ""))
    if task.startswith("tile-"):  # tile-ROW.COLUMN-...
        return f" (tile {task.split('-')[1].replace('.', ',')})"
    return f" (slice {task.split('-')[1]})" if task.startswith("slice-") else ""


def _ran_out_of_memory(client, error) -> int:
    """The memory (bytes) of the worker that died with the task last, if its nanny restarted it for memory, else 0.

    The nanny logs an event per such restart that names the worker.
    """
    if client is None:
        return 0
    last = getattr(error, "last_worker", None)
    address = getattr(last, "address", last)
    # The nanny's event travels to the scheduler apart from the news of the worker's death, and on a busy machine
    # it can arrive after it: wait for it a little before saying the cause is unknown.
    deadline = time.monotonic() + MEMORY_EVENT_WAIT_S
    while True:
        try:
            events = client.get_events("worker-restart-memory")
        except Exception:  # an older scheduler, or one that went away: say what is certain
            return 0
        used = {e.get("worker"): int(e.get("rss") or 1) for _, e in events if isinstance(e, dict)}
        if address is None or address in used or time.monotonic() > deadline:
            return used.get(address, 0)
        time.sleep(0.1)


def _limit_of(client) -> float:
    """The workers' largest memory limit in bytes (0: none known)."""
    try:
        limits = {w.get("memory_limit") for w in client.scheduler_info(n_workers=-1)["workers"].values()}
    except Exception:
        return 0.0
    limits.discard(None)
    return float(max(limits)) if limits else 0.0


def _use_of(used: int, limit: float) -> str:
    # dask restarts a worker at 95 % of its limit (distributed.worker.memory.terminate).
    if limit:
        return f"it used {used / 1e9:.2g} GB of its {limit / 1e9:.2g} GB memory limit"
    return f"it used {used / 1e9:.2g} GB, close to its memory limit"


def _one_line(message) -> str:
    return " ".join(str(message).split())
