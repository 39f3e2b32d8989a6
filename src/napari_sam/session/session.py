"""The annotation session: one image, the plane shown, its embedding, the prompts and candidates.

The path of an object, in the session's public methods:

1. :meth:`AnnotationSession.show_slice` - the plane on screen; its embedding is
   looked up (memory -> disk -> encoder, :mod:`.embeddings`) in the background;
2. :meth:`~AnnotationSession.set_prompt` - the points and box on that slice;
   SAM's decoder turns them into three candidates, in the background;
3. :meth:`~AnnotationSession.candidates` / :meth:`~AnnotationSession.select` -
   what the user sees and picks;
4. :meth:`~AnnotationSession.plan_commit` - which label pixels change
   (:mod:`napari_sam.commit`); the caller applies it as one undoable step.

Everything here runs on the caller's ("home") thread, except the jobs of the
lanes, whose results come home through ``post`` (see :mod:`.work`). Signals
(psygnal, no Qt) say what changed; the docks draw it. Plain Python: the docks
and the tests drive the same object.
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass

import numpy as np
from psygnal import Signal

from .. import commit as commits
from ..geometry import mask_box
from ..prompts import Candidates, Prompt, PromptBook
from .registry import EngineSpec
from .slice_embeddings import SliceEmbeddings
from .work import DecodeTimer, Job, Lane, Post, post_directly

#: Prefetching waits this long without a click or a slice change: an encoder
#: running beside the decoder would slow down the user's clicks.
PREFETCH_IDLE_S = 1.5


@dataclass(frozen=True)
class Status:
    """The session's state in one sentence; ``level`` is "info", "busy", "warning" or "error"."""

    text: str
    level: str = "info"


def _one_line(err: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(err), err)).strip()
    return " ".join(text.split())


class AnnotationSession:
    """One image layer being annotated (2D, RGB, or stacks whose last two axes are the plane)."""

    slice_changed = Signal(object)  # the slice index now shown
    candidates_changed = Signal(object)  # the slice whose candidates changed
    engine_changed = Signal(object)  # the engine now in use (also after a failed load: the old one)
    status_changed = Signal(object)  # a Status
    activity_changed = Signal()  # background work started or ended
    notify = Signal(str, str)  # (level, text): something to tell the user once (errors, lost store)

    def __init__(self, planes, workspace, post: Post = post_directly, *, prefetch: bool = True) -> None:
        self.planes = planes
        self.workspace = workspace
        self.book = PromptBook()
        self.engine = None
        self.engine_spec: EngineSpec | None = None
        self.prefetch_enabled = prefetch
        self.prefetch_idle_s = PREFETCH_IDLE_S
        self.status = Status("Choose a model.")
        self.closed = False
        self._post = post
        self._embeddings = SliceEmbeddings(planes, workspace, post, self._embedded, self._embed_failed, self._activity)
        self._decode = Lane("decoding", post)
        self.decode_timer = DecodeTimer()
        self._loader = Lane("model loading", post, on_busy=lambda _: self._activity())
        self._slice: tuple[int, ...] | None = None
        self._ready = None  # (slice, engine, embedding) of the slice shown, once at hand
        self._load_serial = 0
        self._store_warned = False
        self._idle_timer: threading.Timer | None = None

    # ------------------------------------------------------------------ state
    @property
    def slice_index(self) -> tuple[int, ...] | None:
        return self._slice

    @property
    def embedding_ready(self) -> bool:
        """The embedding of the slice shown is at hand: clicks decode at once."""
        return self._ready is not None and self._ready[0] == self._slice and self._ready[1] is self.engine

    @property
    def embedding(self):
        """The :class:`~napari_sam.model.ImageEmbedding` of the slice shown, or None while it is not at hand."""
        return self._ready[2] if self.embedding_ready else None

    @property
    def embedding_wanted(self) -> bool:
        """Someone waits for an embedding (not a prefetch): what a Cancel button stops."""
        return self._embeddings.user_waiting

    @property
    def loading(self) -> bool:
        return self._loader.is_busy

    def is_idle(self) -> bool:
        """No model loading, no embedding and no decoding running or waiting."""
        return not (self._loader.is_busy or self._embeddings.lane.is_busy or self._decode.is_busy)

    def describe(self, slice_index=None) -> str:
        s = self._slice if slice_index is None else slice_index
        return self.planes.describe(s) if s is not None else self.planes.name

    def say(self, text: str, level: str = "info") -> None:
        """Set the status line (the napari side uses it too, for news about the view)."""
        self.status = Status(text, level)
        self.status_changed.emit(self.status)

    def _activity(self) -> None:
        if not self.closed:
            self.activity_changed.emit()

    # ------------------------------------------------------------------ the model
    def load_engine(self, spec: EngineSpec) -> None:
        """Load (or take from the registry) the model ``spec`` in the background; prompts are kept."""
        if not isinstance(spec, EngineSpec):
            raise TypeError(f"expected an EngineSpec, got {type(spec).__name__}")
        self._load_serial += 1
        serial = self._load_serial
        ready = self.workspace.engines.loaded(spec)
        if ready is not None:
            self.set_engine(ready, spec)
            return
        self.say(f"Loading model {spec.describe()} …", "busy")
        self._loader.submit(Job(
            lambda: self.workspace.engines.get(spec),
            done=lambda engine: serial == self._load_serial and self.set_engine(engine, spec),
            failed=lambda err: serial == self._load_serial and self._load_failed(spec, err),
            tag=spec,
        ))
        self._activity()

    def _load_failed(self, spec: EngineSpec, err: BaseException) -> None:
        text = f"Could not load model {spec.describe()}: {_one_line(err)}"
        if self.engine is not None:
            text += f". Still using {self.engine_spec.describe() if self.engine_spec else self.engine.name}."
        self.say(text, "error")
        self.notify.emit("error", text)
        self.engine_changed.emit(self.engine)  # so a model chooser shows what is really in use

    def set_engine(self, engine, spec: EngineSpec | None = None) -> None:
        """Use ``engine`` from now on. The prompts stay; candidates of the old model are dropped."""
        if self.closed or engine is self.engine:
            return
        dropped = [s for s in self.book.slices() if self.book.get(s).candidates is not None]
        self.book.forget_results()  # logits of one model mean nothing to another
        self._embeddings.cancel(self.engine)
        self.engine, self.engine_spec, self._ready = engine, spec, None
        self.engine_changed.emit(engine)
        for s in dropped:
            self.candidates_changed.emit(s)
        text = f"Model {spec.describe() if spec else engine.name} ready: {engine.precision_reason}."
        if dropped:
            text += " Candidates of the previous model were dropped; your prompts are decoded again."
            self.notify.emit("info", text)
        self.say(text)
        if self._slice is not None:
            self._want_embedding(self._slice)

    # ------------------------------------------------------------------ 1. the plane shown
    def show_slice(self, slice_index) -> None:
        """The user looks at ``slice_index`` now: get its embedding ready."""
        if self.closed:
            return
        s = self.planes.check_slice(slice_index)
        if s != self._slice:
            self._slice = s
            self.slice_changed.emit(s)
        self._restart_idle_countdown()
        if self.engine is None:
            self.say("Load a model to start.")
            return
        self._want_embedding(s)

    def _model_name(self) -> str:
        return self.engine_spec.model if self.engine_spec is not None else self.engine.name

    def _want_embedding(self, s) -> None:
        if self.embedding_ready:
            return
        embedding = self._embeddings.want(s, self.engine)
        if embedding is not None:
            self._on_ready(s, self.engine, embedding, "embedding in memory")
        else:
            self.say(f"{self.describe(s)}: embedding with {self._model_name()} …", "busy")

    def _embedded(self, s, engine, embedding, origin: str) -> None:
        """An embedding arrived from the background: used if it is the one the user waits for."""
        if self.closed:
            return
        self._warn_once_about_store()
        if engine is self.engine and s == self._slice and not self.embedding_ready:
            self._on_ready(s, engine, embedding, origin)

    def _embed_failed(self, s, engine, err, user_waits: bool) -> None:
        if self.closed or engine is not self.engine or not user_waits:
            return
        text = f"Could not embed {self.describe(s)} of {self.planes.name!r}: {_one_line(err)}"
        self.say(text, "error")
        self.notify.emit("error", text)

    def _warn_once_about_store(self) -> None:
        err = self.workspace.embeddings.store_error
        if err is not None and not self._store_warned:
            self._store_warned = True
            self.notify.emit("warning", f"{err}. Going on from memory: nothing is lost, but these embeddings "
                                        "will be computed again in a later session.")

    def _on_ready(self, s, engine, embedding, origin: str) -> None:
        self._ready = (s, engine, embedding)
        self.say(f"{self.describe(s)}: ready ({origin}). Click on an object or drag a box.")
        # The decoder's per-image work now, in its lane, not at the first click.
        self._decode.submit(Job(lambda: engine.prepare(embedding), tag="prepare"))
        if self.book.get(s).request(s) is not None:
            self._decode_prompt(s)
        self._restart_idle_countdown()

    def cancel(self) -> None:
        """Stop waiting for embeddings (one running finishes in the background and is kept)."""
        if self._embeddings.cancel():
            self.say(f"Embedding cancelled. Show {self.describe()} again to embed it.", "warning")
        self._activity()

    # ------------------------------------------------------------------ prefetch
    def _restart_idle_countdown(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if not (self.prefetch_enabled and self.planes.is_stack and not self.closed):
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
        if not self.closed and self.engine is not None and self._slice and self.prefetch_enabled:
            self._embeddings.prefetch(self._slice, self.engine)

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

    def _on_decode_failed(self, s, err) -> None:
        text = f"Could not segment this prompt on {self.describe(s)}: {_one_line(err)}"
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

    # ------------------------------------------------------------------ 4. candidates -> label
    def plan_commit(self, labels: np.ndarray, object_id: int | None = None, *, overwrite: bool = False):
        """The :class:`~napari_sam.commit.LabelChange` that writes the selected candidate into ``labels``.

        ``labels`` has the image's spatial shape. While an object is being
        edited (:meth:`start_edit`) its id is used and the object is replaced
        on this slice. Other objects keep their pixels unless ``overwrite``.
        """
        s, cands = self._slice, self.candidates()
        if cands is None:
            raise ValueError("Nothing to commit: place a prompt and wait for the candidates.")
        edit_id = self.book.get(s).edit_id
        return commits.plan_commit(
            labels, cands.mask, s, edit_id or object_id, overwrite=overwrite, replace=edit_id is not None
        )

    def start_edit(self, labels: np.ndarray, object_id: int) -> None:
        """Fix an existing object on this slice: its mask (and box) become the prompt; commit replaces it."""
        s = self._slice
        if s is None:
            raise ValueError("No slice is shown.")
        if self.engine is None:
            raise ValueError("Load a model first.")
        mask = commits.object_mask(labels, s, object_id)
        if not mask.any():
            raise ValueError(f"Object {object_id} is not on {self.describe(s)}.")
        self.book.start_edit(s, int(object_id), mask_logits=self.engine.mask_prompt(mask), box=mask_box(mask))
        self.say(f"Editing object {object_id}: add points to fix it, then commit (C) to replace it.")
        self._decode_prompt(s)

    def editing(self) -> int | None:
        s = self._slice
        return self.book.get(s).edit_id if s is not None and s in self.book else None

    # ------------------------------------------------------------------ the image
    def planes_changed(self, planes) -> None:
        """The image's pixels were replaced: every embedding identity is recomputed."""
        self.planes, self._ready = planes, None
        self._embeddings.forget_keys(planes)
        self.book.forget_results()
        if self._slice is not None and planes.lead_shape and len(self._slice) == len(planes.lead_shape):
            self.show_slice(tuple(min(i, n - 1) for i, n in zip(self._slice, planes.lead_shape)))

    def close(self) -> None:
        """The image is gone or the app closes: start nothing more, report nothing more."""
        self.closed = True
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        for lane in (self._embeddings.lane, self._decode, self._loader):
            lane.close()

    def join(self, timeout: float = 30.0) -> bool:
        """Wait for running background jobs to end (tests, shutdown)."""
        return all(lane.join(timeout) for lane in (self._embeddings.lane, self._decode, self._loader))
