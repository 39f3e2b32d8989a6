"""Embedding a stack's neighbouring slices while the user pauses (a convenience: never in the way).

A mixin of :class:`~.session.AnnotationSession`: it uses the session's
``prefetch_enabled``, ``planes``, ``engine``, ``closed``, ``_post`` and
``_embeddings``.
"""

from __future__ import annotations

import threading

#: Prefetching waits this long without a click or a slice change: an encoder
#: running beside the decoder would slow down the user's clicks.
PREFETCH_IDLE_S = 1.5


class Prefetching:
    prefetch_idle_s = PREFETCH_IDLE_S
    _idle_timer: threading.Timer | None = None

    def _prefetch_applies(self) -> bool:
        """Only stacks have neighbours; planes handled by tiles are never embedded whole."""
        return self.prefetch_enabled and self.planes.is_stack and not self.closed and not self._tiled_plane()

    def _restart_idle_countdown(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if not self._prefetch_applies():
            return
        timer = threading.Timer(self.prefetch_idle_s, lambda: self._send(self.prefetch_now))
        timer.daemon = True
        self._idle_timer = timer
        timer.start()

    def _send(self, fn) -> None:
        try:
            self._post(lambda _: fn(), None)
        except RuntimeError:  # no event loop left (napari closed)
            pass

    def prefetch_now(self) -> None:
        """Embed the shown slice's neighbours in the background (a convenience: never in the way)."""
        if not self.closed and self.engine is not None and self._slice and self._prefetch_applies():
            self._embeddings.prefetch(self._slice, self.engine)

    def _stop_prefetching(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
