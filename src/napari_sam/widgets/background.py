"""Computing slice embeddings off napari's main thread.

One job runs at a time (the encoder already uses every CPU core): the slice
on screen first, then its neighbours (prefetch), each in a background
:class:`~napari_sam.widgets.tasks.Task` with a progress bar in napari's
activity area (a Task, not a napari thread worker, so that closing napari
while an embedding runs cannot crash it; see ``tasks.py``). A finished
embedding goes into the shared :class:`~napari_sam.embedding_cache.EmbeddingCache`
under its full identity (image fingerprint, slice, model, preprocessing) and
:attr:`BackgroundEmbedder.embedded` announces its key. The widget uses it only
if that key is still the one it needs: a result for slice 5 can never decode
prompts on slice 6.

Progress: each job shows a napari progress bar (activity area) that is
determinate (0 of 1 until done) on purpose. An indeterminate bar, what
``thread_worker(progress=True)`` gives a function, animates continuously: it
repaints many times a second in the main thread and the display server, CPU
taken from the encoder. On a 2-core machine it added about 25-35 % to the
CPU time of an embedding (vit_t and vit_b; benchmarks/bench_responsiveness.py),
time the encoder's threads no longer have.

Thread settings: some PyTorch/OpenMP builds keep the intra-op thread count
per calling thread, so a fresh worker thread could run the encoder with a
different count than the main thread. Each job therefore applies the main
thread's count in its worker thread first. With torch 2.13 the count is
process-wide (a worker reads what the main thread set) and copying it made
no measurable difference; grad mode, also per thread, does not matter
because the engine embeds under ``torch.inference_mode``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from qtpy.QtCore import QCoreApplication, QObject, Signal

from ..embedding_cache import EmbeddingCache, EmbeddingKey
from .tasks import Task


@dataclass(frozen=True)
class EmbedJob:
    key: EmbeddingKey
    engine: Any  # SamEngine or a stand-in with .embed(plane, intensity_range)
    plane: Any  # the 2D (or RGB) plane, already read
    intensity_range: tuple[float, float] | None = None
    prefetch: bool = False
    label: str = field(default="", compare=False)


def run_embedding(job: EmbedJob, num_threads: int):
    """Body of one worker: runs in the worker thread."""
    if num_threads > 0 and torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    return job.engine.embed(job.plane, job.intensity_range)


class BackgroundEmbedder(QObject):
    """A queue of embedding jobs, run one at a time in background threads."""

    embedded = Signal(object)  # EmbeddingKey, now in the cache
    failed = Signal(object, object)  # EmbedJob, exception
    busy_changed = Signal(bool)

    def __init__(self, cache: EmbeddingCache, parent=None, num_threads: int | None = None) -> None:
        super().__init__(parent)
        self.cache = cache
        # Captured here, in the main thread, and applied in every worker thread.
        self.num_threads = int(num_threads or torch.get_num_threads())
        self._queue: list[EmbedJob] = []
        self._running: EmbedJob | None = None
        self._worker = None
        self._cancelled = False
        self._closed = False
        self._progress = None
        self.on_error: Callable[[EmbedJob, BaseException], None] | None = None
        app = QCoreApplication.instance()
        if app is not None:  # napari is quitting: start nothing new
            app.aboutToQuit.connect(self.close)

    @property
    def is_busy(self) -> bool:
        return self._running is not None or bool(self._queue)

    @property
    def running(self) -> EmbedJob | None:
        return self._running

    def submit(self, job: EmbedJob, prefetch=()) -> None:
        """Run ``job`` next (then ``prefetch``); replaces whatever was still waiting."""
        if self._closed:
            return
        wanted = [job, *prefetch]
        running_key = self._running.key if self._running is not None else None
        self._queue = [j for j in wanted if j.key not in self.cache and j.key != running_key]
        self._cancelled = False
        self._start_next()

    def cancel(self) -> None:
        """Drop waiting jobs; the running one finishes but its result is not announced.

        An encoder forward pass cannot be interrupted; its result is still
        cached (it is valid), so coming back to that slice costs nothing.
        """
        self._queue.clear()
        if self._running is not None:
            self._cancelled = True
        else:
            self.busy_changed.emit(False)

    def close(self) -> None:
        """Start no more jobs (napari is closing); a running one ends on its own."""
        self._closed = True
        self._queue.clear()
        self._cancelled = True

    def _start_next(self) -> None:
        if self._running is not None or self._closed:
            return
        if not self._queue:
            self.busy_changed.emit(False)
            return
        job = self._queue.pop(0)
        self._running = job
        what = "prefetching" if job.prefetch else "embedding"
        self._progress = open_progress(f"SAM: {what} {job.label or 'image'}")
        self._worker = Task(
            run_embedding, job, self.num_threads,
            on_returned=lambda emb, job=job: self._on_returned(job, emb),
            on_errored=lambda err, job=job: self._on_errored(job, err),
            on_finished=self._on_finished,
            name="napari-sam embedding",
        )
        self.busy_changed.emit(True)
        self._worker.start()

    # The three handlers below run in the main thread. A worker may finish after
    # napari closed the widget (and Qt deleted this object): then there is no
    # one left to tell, which Qt reports as RuntimeError.
    def _on_returned(self, job: EmbedJob, embedding) -> None:
        self.cache.put(job.key, embedding)
        if not self._cancelled:
            try:
                self.embedded.emit(job.key)
            except RuntimeError:
                pass

    def _on_errored(self, job: EmbedJob, err: BaseException) -> None:
        # Waiting prefetches would most likely fail the same way.
        self._queue = [j for j in self._queue if not j.prefetch]
        try:
            self.failed.emit(job, err)
        except RuntimeError:
            pass

    def _on_finished(self) -> None:
        close_progress(self._progress)
        self._progress = None
        self._running = None
        self._worker = None
        self._cancelled = False
        try:
            self._start_next()
        except RuntimeError:
            pass


def open_progress(description: str):
    try:
        from napari.utils import progress

        return progress(total=1, desc=description)
    except Exception:  # the progress display is a courtesy; never fail a job over it
        return None


def close_progress(bar) -> None:
    if bar is None:
        return
    try:
        bar.update(1)
        bar.close()
    except Exception:
        pass
