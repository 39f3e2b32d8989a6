"""A dock's long job: one background lane, a progress bar and a Cancel button.

One job at a time per dock (the encoder already keeps every CPU core busy).
The job's function runs in a background lane at lower CPU priority; its
result and its failure come back to the main thread through ``post``.
Cancel asks the job to stop after its current step: jobs take
:attr:`JobRows.should_cancel` and :meth:`JobRows.progress` as their
``should_cancel`` and ``progress`` arguments.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from qtpy.QtCore import QCoreApplication
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QProgressBar, QPushButton

from ..session import Job, Lane


class JobRows:
    """``post(fn, value)`` runs ``fn(value)`` in the main thread; ``busy(on)`` is told when a job starts and ends;
    ``fail(text)`` reports a refused start or a failed job."""

    def __init__(self, form: QFormLayout, post, *, name: str, busy: Callable[[bool], None],
                 fail: Callable[[str], None], what: str = "Slices done in the running job.") -> None:
        self.post, self.busy, self.fail = post, busy, fail
        self._cancel = threading.Event()
        self._lane = Lane(name, post, background=True)
        self.running = False  # a job was started and its result has not been handled yet
        app = QCoreApplication.instance()
        if app is not None:  # napari is quitting: a running job stops after its current step
            app.aboutToQuit.connect(self._cancel.set)
        self.progress_bar = QProgressBar()
        self.progress_bar.setToolTip(what)
        self.progress_bar.setRange(0, 1)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job after its current step (what is finished is kept).")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.addWidget(self.progress_bar, 1)
        row.addWidget(self.cancel_button)
        form.addRow(row)

    @property
    def should_cancel(self) -> Callable[[], bool]:
        return self._cancel.is_set

    def start(self, fn: Callable[[], object], done: Callable[[object], None], what: str) -> bool:
        """Run ``fn()`` in the background, then ``done(result)`` in the main thread; False when a job runs."""
        if self.running:
            self.fail("a job is already running; wait for it or cancel it")
            return False
        self._cancel.clear()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)

        def finish(callback, value):  # in the main thread, once the result is here
            self.running = False
            self.cancel_button.setEnabled(False)
            self.busy(False)
            callback(value)

        self.running = True
        self.cancel_button.setEnabled(True)
        self.busy(True)
        self._lane.submit(Job(fn, done=lambda value: finish(done, value),
                              failed=lambda err: finish(lambda e: self.fail(f"{what} failed: {e}"), err)))
        return True

    def progress(self, done: int, total: int) -> None:
        """Safe from the worker thread: the bar is drawn in the main thread."""
        self.post(lambda _: self._show(done, total), None)

    def _show(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(min(done, max(1, total)))

    def cancel(self) -> None:
        """Ask the running job to stop after its current step."""
        self._cancel.set()

    def close(self) -> None:
        self._cancel.set()
        self._lane.close()
