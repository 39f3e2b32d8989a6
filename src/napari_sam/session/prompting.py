"""Prompts to candidates: the points and box of a slice, decoded into SAM's three candidate masks.

A mixin of :class:`~.session.AnnotationSession` (it uses the session's
``book``, ``planes``, ``engine``, ``_slice``, ``_ready`` and its lanes).
A plane of ordinary size is decoded on its one embedding, here and now when
that is quick (:class:`~.work.DecodeTimer`), else in the decode lane. A plane
handled by tiles is always decoded in the decode lane: a click there may
need a tile's encoder run (see :mod:`.tiled`).
"""

from __future__ import annotations

from ..prompts import Candidates, Prompt
from .status import one_line
from .tiled import TiledPlane, decode_by_tiles
from .work import Job


class Prompting:
    # ------------------------------------------------------------------ 2. prompts -> candidates
    def set_prompt(self, slice_index, prompt: Prompt) -> None:
        """The prompt now on ``slice_index`` (points and box); decodes it when it changed."""
        s = self.planes.check_slice(slice_index)
        self._restart_idle_countdown()
        request = self.book.update(s, prompt)
        if request is None:
            if self.book.get(s).candidates is None:
                self.candidates_changed.emit(s)
            return
        self._decode_prompt(s)

    def _decode_prompt(self, s) -> None:
        request = self.book.get(s).request(s)
        if request is None:
            return
        if not (self.embedding_ready and self._slice == s):
            if s == self._slice and self.engine is not None:
                self.say(f"{self.describe(s)}: waiting for its embedding …", "busy")
            return  # decoded when the embedding is ready (_on_ready)
        _, engine, embedding = self._ready
        if isinstance(embedding, TiledPlane):
            self._decode.submit(Job(
                lambda: decode_by_tiles(embedding, request),
                done=lambda found: self._on_decoded_by_tiles(engine, embedding, request, found),
                failed=lambda err: self._on_decode_failed(s, err),
                tag=s,
            ), replace_waiting=True)
            return
        # While an embedding runs beside it, an inline decode is slower and shares the click's event with
        # napari's drawing: decoded in the background then, the event loop never waits for both.
        if self._decode.is_busy or self._embeddings.lane.is_busy or not self.decode_timer.inline():
            self._decode.submit(Job(
                lambda: engine.decode(embedding, request),
                done=lambda result: self._on_decoded(engine, request, result),
                failed=lambda err: self._on_decode_failed(s, err),
                tag=s,
            ), replace_waiting=True)
            return
        # Quick on this machine (see DecodeTimer): decoded here and now, so the click and its
        # candidates are drawn together.
        try:
            result = self.decode_timer.timed(engine.decode, embedding, request)
        except Exception as err:  # reported like a failure in the lane
            self._on_decode_failed(s, err)
            return
        self._on_decoded(engine, request, result)

    def _on_decoded(self, engine, request, result) -> None:
        if self.closed or engine is not self.engine:
            return
        masks, iou, low_res = result
        if self.book.set_result(request, masks, iou, low_res) is not None:
            self.candidates_changed.emit(request.slice_index)

    def _on_decoded_by_tiles(self, engine, plane: TiledPlane, request, found) -> None:
        if self.closed or engine is not self.engine:
            return
        if self.book.set_result(request, found.masks, found.iou, found.low_res, offset=found.offset) is None:
            return
        self.say(plane.describe_click(self.describe(request.slice_index), found),
                 "warning" if found.cut else "info")
        self.candidates_changed.emit(request.slice_index)

    def _on_decode_failed(self, s, err) -> None:
        text = f"Could not segment this prompt on {self.describe(s)}: {one_line(err)}"
        self.say(text, "error")
        self.notify.emit("error", text)

    # ------------------------------------------------------------------ 3. candidates
    def candidates(self, slice_index=None) -> Candidates | None:
        s = self._slice if slice_index is None else tuple(slice_index)
        return self.book.get(s).candidates if s is not None and s in self.book else None

    def select(self, k: int) -> Candidates:
        """Choose candidate ``k`` (0, 1, 2) of the slice shown for the next commit."""
        if self.candidates() is None:
            raise ValueError("No candidates yet: place a point or a box.")
        cands = self.book.select(self._slice, k)
        self.candidates_changed.emit(self._slice)
        return cands

    def clear(self, slice_index=None) -> None:
        """Forget the object being annotated on a slice (prompts, edit target, candidates)."""
        s = self._slice if slice_index is None else self.planes.check_slice(slice_index)
        if s is None:
            return
        self.book.clear(s)
        self.candidates_changed.emit(s)
