"""Work off napari's main thread that can never crash napari when it closes.

napari's thread workers (superqt) run in Qt's thread pool and report back
through a Qt object of their own. When napari closes while one still runs (an
embedding takes seconds on a CPU, and closing the viewer removes layers, which
moves the slider, which asks for an embedding), the worker finishes during
Python's shutdown, finds its Qt signals already deleted and raises inside a Qt
thread, and Qt aborts the whole process.

A :class:`Task` is a plain Python thread instead. Python waits for it when
the program ends, and the result travels to the main thread through a queued
Qt signal whose failure, once Qt is gone, is caught here: there is nobody left
to tell, and nothing a user made depends on it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from qtpy.QtCore import QObject, Signal


class _MainThreadRelay(QObject):
    """Calls ``callback(value)`` in the thread this object was made in (the main thread)."""

    call = Signal(object, object)

    def __init__(self) -> None:
        super().__init__()
        # Emitted from the task's thread, so Qt queues the call to this object's thread.
        self.call.connect(self._call)

    def _call(self, callback: Callable[[Any], None], value: Any) -> None:
        callback(value)


class Task:
    """Run ``fn(*args)`` in a background thread; report in the main thread.

    ``on_returned(value)`` or ``on_errored(exception)``, then ``on_finished()``,
    are called in the main thread, from its event loop. Create and start a task
    in the main thread.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_returned: Callable[[Any], None] | None = None,
        on_errored: Callable[[BaseException], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        name: str = "napari-sam task",
    ) -> None:
        self._fn = fn
        self._args = args
        self._on_returned = on_returned
        self._on_errored = on_errored
        self._on_finished = on_finished
        self._relay = _MainThreadRelay()
        self._thread = threading.Thread(target=self._run, name=name)

    def start(self) -> "Task":
        self._thread.start()
        return self

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread (up to ``timeout`` seconds); True once it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            value = self._fn(*self._args)
        except Exception as err:  # reported to the user by on_errored
            self._send(self._on_errored, err)
        else:
            self._send(self._on_returned, value)
        if self._on_finished is not None:
            finished = self._on_finished
            self._send(lambda _: finished(), None)

    def _send(self, callback, value) -> None:
        if callback is None:
            return
        try:
            self._relay.call.emit(callback, value)
        except RuntimeError:  # Qt has shut down (napari closed) while this ran
            pass
