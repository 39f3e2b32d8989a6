"""Background work for the session: lanes of jobs run off the caller's thread, results posted back.

The session never runs the model on the thread that draws napari. Each kind
of work has its own :class:`Lane`, one job at a time:

* "embed": the image encoder (seconds per slice); the encoder already uses
  every CPU core, so two embeddings at once would only slow both down;
* "decode": prompt -> candidates (milliseconds); a newer prompt replaces one
  still waiting, so a burst of edits decodes only the last state.

A lane runs its jobs in one worker thread of its own that stays for the
lane's life (a one-worker ``concurrent.futures`` pool, not a Qt thread pool:
Python waits for a running job when the program ends, so closing napari
mid-embedding cannot crash the process). A thread per job made each decode
slower, its compute threads and buffers made anew each time: on a 2-core AVX2
CPU (vit_b, 512 px, ``benchmarks/bench_lane_thread.py``) 44-51 ms against
40-41 ms in the lasting worker, and 55-59 against 36-54 ms with an embedding
running beside (inline: 28-40 ms).
What a job returns is handed to
``post(callback, value)``: the caller decides where callbacks run. The napari
docks post into Qt's main thread (``widgets/tasks.py``); tests post into a
queue they drain themselves, which keeps them deterministic.

No Qt and no napari here.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

Post = Callable[[Callable[[Any], None], Any], None]  # post(callback, value): run callback(value) "at home"


def post_directly(callback: Callable[[Any], None], value: Any) -> None:
    """A ``post`` that calls back at once, in the worker thread (scripts without an event loop)."""
    callback(value)


@dataclass
class Job:
    """``fn()`` to run in the background; ``done(value)`` or ``failed(error)`` run where ``post`` says."""

    fn: Callable[[], Any]
    done: Callable[[Any], None] | None = None
    failed: Callable[[BaseException], None] | None = None
    tag: Any = None  # what the job is for (a slice, a key): for cancelling and for status lines
    user_waits: bool = True  # False for prefetching: nobody is waiting for it
    cancelled: bool = field(default=False, compare=False)


class Lane:
    """Jobs of one kind, run one at a time in the lane's worker thread, oldest first.

    ``on_busy(busy)`` is posted whenever the lane starts or stops having work.
    """

    def __init__(self, name: str, post: Post, on_busy: Callable[[bool], None] | None = None,
                 background: bool = False) -> None:
        self.name = name
        self.background = background  # heavy work: run it at a lower CPU priority (see _run)
        self._post = post
        self._on_busy = on_busy
        self._lock = threading.Lock()
        self._waiting: list[Job] = []
        self._running: Job | None = None
        self._worker: ThreadPoolExecutor | None = None  # made with the first job
        self._active = False  # in a busy period (on_busy(True) was sent)
        self._idle = threading.Event()  # no job running
        self._idle.set()
        self._closed = False

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> Job | None:
        return self._running

    @property
    def waiting(self) -> list[Job]:
        with self._lock:
            return list(self._waiting)

    @property
    def is_busy(self) -> bool:
        with self._lock:
            return self._running is not None or bool(self._waiting)

    @property
    def user_is_waiting(self) -> bool:
        """A job someone asked for (not a prefetch) is running or waiting."""
        with self._lock:
            jobs = ([self._running] if self._running is not None else []) + self._waiting
            return any(j.user_waits and not j.cancelled for j in jobs)

    # ------------------------------------------------------------------ control
    def submit(self, job: Job, *, replace_waiting: bool = False) -> Job:
        """Queue ``job`` (after the ones waiting, or instead of them with ``replace_waiting``)."""
        with self._lock:
            if self._closed:
                job.cancelled = True
                return job
            if replace_waiting:
                for old in self._waiting:
                    old.cancelled = True
                self._waiting = []
            self._waiting.append(job)
            start = self._running is None
        if start:
            self._start_next()
        return job

    def cancel(self, predicate: Callable[[Job], bool] | None = None) -> int:
        """Drop waiting jobs (those ``predicate`` picks, default all); the running one is told too.

        A running encoder pass cannot be interrupted: it finishes, but its
        ``done`` is not called. Returns how many jobs were cancelled.
        """
        with self._lock:
            pick = predicate or (lambda job: True)
            doomed = [j for j in self._waiting if pick(j)]
            self._waiting = [j for j in self._waiting if not pick(j)]
            if self._running is not None and pick(self._running):
                doomed.append(self._running)
        for job in doomed:
            job.cancelled = True
        return len(doomed)

    def close(self) -> None:
        """Start nothing more; a running job ends on its own and reports nothing."""
        with self._lock:
            self._closed = True
            worker, self._worker = self._worker, None
        self.cancel()
        if worker is not None:
            worker.shutdown(wait=False)  # the worker thread ends after the running job

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the running job; True when none runs."""
        return self._idle.wait(timeout)

    # ------------------------------------------------------------------ inside
    def _start_next(self) -> None:
        with self._lock:
            if self._running is not None:
                return
            if not self._waiting or self._closed:
                was_busy, self._active = self._active, False
                if was_busy and self._on_busy is not None:
                    self._send(self._on_busy, False)
                return
            job = self._running = self._waiting.pop(0)
            self._idle.clear()
            first, self._active = not self._active, True
            if self._worker is None:
                self._worker = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"napari-sam {self.name}",
                    initializer=lower_priority if self.background else None)
            worker = self._worker
        if first and self._on_busy is not None:
            self._send(self._on_busy, True)
        try:
            worker.submit(self._run, job)
        except RuntimeError:  # closed meanwhile, or Python is exiting: the job never runs
            job.cancelled = True
            with self._lock:
                self._running, self._active = None, False
                self._idle.set()
            if self._on_busy is not None:
                self._send(self._on_busy, False)

    def _run(self, job: Job) -> None:
        try:
            value = job.fn()
        except Exception as err:  # reported through job.failed
            if not job.cancelled and job.failed is not None:
                self._send(job.failed, err)
        else:
            if not job.cancelled and job.done is not None:
                self._send(job.done, value)
        finally:
            with self._lock:
                self._running = None
                self._idle.set()
        self._start_next()

    def _send(self, callback, value) -> None:
        try:
            self._post(callback, value)
        except RuntimeError:  # the event loop that would run it is gone (napari closed)
            pass


#: How much nicer than napari's own thread background work runs (Unix "nice" levels).
BACKGROUND_NICENESS = 10


def lower_priority() -> None:
    """Give the calling thread (and the compute threads it starts) a lower CPU priority.

    An embedding keeps every core busy for seconds. At the same priority as
    napari's thread, drawing and clicks on a 2-core laptop wait for a share
    of the CPU; at a lower one they get it at once and the embedding runs on
    whatever is left, as fast as before when napari is idle. On Linux the
    niceness is per thread and inherited by the threads a thread starts
    (PyTorch's OpenMP workers for this thread); elsewhere this does nothing.
    """
    try:
        me = threading.get_native_id()
        # Relative to the thread's own level: napari started with "nice" keeps its background lower still.
        os.setpriority(os.PRIO_PROCESS, me, min(os.getpriority(os.PRIO_PROCESS, me) + BACKGROUND_NICENESS, 19))
    except (AttributeError, OSError):  # no per-thread priorities here (Windows, macOS), or not allowed
        pass


class DecodeTimer:
    """Whether a prompt is decoded where the click arrives (inline) or in the background.

    Decoding in a background thread keeps napari responsive when the decoder
    is slow (a busy laptop CPU, a large model), but on a quick machine it is
    slower than decoding where the click arrives: the two threads share
    Python's lock with napari's drawing, and the click is drawn before its
    candidates. Measured (vit_b, 512 px, 2-core CPUs): on an AVX512-BF16 Xeon
    20 ms per click on napari's thread, 29 ms in another thread and 55-67 ms
    while napari draws; on an AVX2-only EPYC under software OpenGL 33-60 ms on
    napari's thread and 105-190 ms in the background (then a new thread per
    decode), where the decoder's threads share the two cores with the
    rasterizer's.

    Only inline decodes are timed (a background one's time says more about
    napari's drawing than about the decoder). The first decode is inline, as
    every decode was before there was a background; later ones are inline
    while the recent inline decodes took at most :attr:`quick_s`. In the
    background, one decode in :attr:`probe_every` is tried inline again, so a
    machine that became quiet goes back to the quick path.
    """

    # Inline up to 60 ms: within the 100 ms a click may take, and clear of the AVX2 machine's 33-60 ms
    # (at 40 ms one 42 ms decode sent every later click there to the background, 160-290 ms each).
    def __init__(self, quick_s: float = 0.06, weight: float = 0.3, probe_every: int = 20) -> None:
        self.quick_s, self.weight, self.probe_every = quick_s, weight, probe_every
        self.estimate: float | None = None  # seconds: a moving average of recent inline decodes
        self._in_background = 0

    def inline(self) -> bool:
        """Decode the next prompt inline?"""
        if self.estimate is None or self.estimate <= self.quick_s:
            return True
        self._in_background += 1
        if self._in_background >= self.probe_every:
            self._in_background = 0
            return True
        return False

    def timed(self, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            took = time.perf_counter() - start
            self.estimate = took if self.estimate is None else (1 - self.weight) * self.estimate + self.weight * took
