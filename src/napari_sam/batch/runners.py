"""Running the jobs: one after the other here, or as tasks of a dask.distributed cluster.

Both runners yield each input's :class:`~.job.Result` as it finishes, and
both stop starting new inputs once one reports a full disk (every further
one would fail the same way, after segmenting for nothing).

On a cluster each input is one task, submitted with ``retries``: results are
written by the worker itself into the results folder (whole or not at all,
:mod:`.outputs`), so a worker that dies loses only the input it was working
on; dask gives that task to another worker, and the run completes. A task
whose workers keep dying (more than the scheduler's
``distributed.scheduler.allowed-failures``) is reported as failed with that
reason. Tasks are per input, not per slice: a folder of many files already
keeps every worker busy, and a stack's slices share its intensity range and
are linked through z in order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .inputs import Input
from .job import JobSpec, Result, segment_input

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


def connect(scheduler: str | None, workers: int | None, timeout: float = 10.0):
    """A dask Client for ``--scheduler ADDRESS`` or a LocalCluster of ``workers`` processes; ValueError if none answers."""
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
                           silence_logs=logging.ERROR)
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


def run_on_cluster(client, items: list[Input], spec: JobSpec, out: Path,
                   job: Callable = segment_input) -> Iterator[Result]:
    """Each input as one task on ``client``'s workers; results in the order they finish."""
    from dataclasses import replace

    from dask.distributed import as_completed

    # Workers on other nodes start in other folders: they get absolute paths.
    out = Path(out).absolute()
    futures = {}
    for item in (replace(i, path=Path(i.path).absolute()) for i in items):
        # pure=False: the same input submitted by a later run is work to do again, not a cached result.
        future = client.submit(job, item, spec, str(out), None, retries=RETRIES, pure=False,
                               key=f"segment-{item.name}-{os.urandom(4).hex()}")
        futures[future] = item
    pending = set(futures)
    try:
        for future in as_completed(list(futures)):
            pending.discard(future)
            result = _result_of(future, futures[future])
            yield result
            if result.disk_full:
                return
    finally:
        # Interrupted, disk full, or the caller stopped early: nothing more is to run.
        if pending:
            client.cancel(list(pending))


def _result_of(future, item: Input) -> Result:
    if future.status == "finished":
        return future.result()
    if future.status == "cancelled":
        return Result(str(item.path), item.name, "failed", reason="cancelled")
    error = future.exception()
    if type(error).__name__ == "KilledWorker":
        reason = ("the dask workers running it died each time it was tried (killed, or beyond their memory limit: "
                  "give the workers more memory, e.g. --memory of dask-jobqueue)")
    else:
        reason = f"{type(error).__name__}: {_one_line(error)}"
    return Result(str(item.path), item.name, "failed", reason=reason)


def _one_line(message) -> str:
    return " ".join(str(message).split())
