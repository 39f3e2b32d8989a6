"""Bringing background results home to napari's main thread.

The session's lanes (``napari_sam.session.work``) run jobs in plain Python
threads, never in a Qt thread pool: Python waits for them when the program
ends, so closing napari mid-embedding cannot abort the process (a Qt worker
that finishes during Python's shutdown finds its Qt signals deleted and Qt
aborts). What a job returns comes home through :class:`MainThreadPost`: a
queued Qt signal whose failure, once Qt is gone, is caught by the lane (there
is nobody left to tell, and nothing a user made depends on it).
"""

from __future__ import annotations

from typing import Any, Callable

from qtpy.QtCore import QObject, Qt, Signal


class MainThreadPost(QObject):
    """``post(callback, value)``: call ``callback(value)`` in the thread this object was made in.

    Always queued to that thread's event loop, also when called from the main
    thread itself: calls then run in the order they were posted, whichever
    thread posted them. Make it in the main thread.
    """

    call = Signal(object, object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(self._call, Qt.ConnectionType.QueuedConnection)

    def __call__(self, callback: Callable[[Any], None], value: Any) -> None:
        self.call.emit(callback, value)

    @staticmethod
    def _call(callback: Callable[[Any], None], value: Any) -> None:
        callback(value)
