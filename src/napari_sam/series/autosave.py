"""Save the labels a moment after the last change, and always before switching image or closing.

Plain Python and timer-agnostic: whoever owns a timer (the dock's QTimer, a
test, a script) calls :meth:`Autosaver.changed` on every edit and
:meth:`Autosaver.tick` now and then; :meth:`Autosaver.flush` saves at once.
Waiting for a pause (``delay_s`` after the last change) keeps a brush stroke
from being written thirty times. A save that fails (disk full, file changed
outside) leaves the labels marked unsaved and is tried again at the next
pause; the error goes to ``on_error`` for the user to see.

An edit that sends no event (napari's undo) is caught at :meth:`flush` when
a ``fingerprint`` of the labels is given: a flush saves whenever it differs
from the one of the last save.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Autosaver:
    def __init__(self, save: Callable[[], object], delay_s: float = 1.5, clock: Callable[[], float] = time.monotonic,
                 on_error: Callable[[Exception], None] | None = None,
                 fingerprint: Callable[[], object] | None = None) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be 0 or more seconds, got {delay_s}")
        self._save, self.delay_s, self._clock = save, float(delay_s), clock
        self._on_error, self._fingerprint = on_error, fingerprint
        self.dirty = False
        self.last_error: Exception | None = None
        self.saves = 0
        self._last_change = 0.0
        self._saved_print = fingerprint() if fingerprint is not None else None

    def changed(self) -> None:
        """The labels were edited: save after the next pause."""
        self.dirty = True
        self._last_change = self._clock()

    def due(self) -> bool:
        return self.dirty and self._clock() - self._last_change >= self.delay_s

    def tick(self) -> bool:
        """Save when the labels changed and have rested ``delay_s``; True when saved now."""
        return self._run() if self.due() else False

    def flush(self) -> bool:
        """Save now if anything changed (switching image, closing); True when nothing is left unsaved."""
        if not self.dirty and self._fingerprint is not None and self._fingerprint() != self._saved_print:
            self.dirty = True
        return self._run() if self.dirty else True

    def _run(self) -> bool:
        try:
            self._save()
        except (OSError, ValueError) as err:
            self.last_error = err
            self._last_change = self._clock()  # try again after another pause, not at every tick
            if self._on_error is not None:
                self._on_error(err)
            return False
        self.dirty, self.last_error = False, None
        self.saves += 1
        if self._fingerprint is not None:
            self._saved_print = self._fingerprint()
        return True
