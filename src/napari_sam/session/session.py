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

A plane too large for one embedding (more than twice the model's input) is
handled by tiles (:mod:`.tiled`): step 1 then measures its contrast only, and
each prompt embeds the tiles it needs.

The steps live in their own modules, mixed into the session: prompts and
candidates in :mod:`.prompting`, commits and edits in :mod:`.labelling`,
prefetching in :mod:`.prefetching`; this module holds the model and the
plane shown.

Everything here runs on the caller's ("home") thread, except the jobs of the
lanes, whose results come home through ``post`` (see :mod:`.work`). Signals
(psygnal, no Qt) say what changed; the docks draw it. Plain Python: the docks
and the tests drive the same object.
"""

from __future__ import annotations

from psygnal import Signal

from ..embeddings import EmbeddingSource
from ..prompts import PromptBook
from .labelling import Labelling
from .prefetching import PREFETCH_IDLE_S, Prefetching
from .prompting import Prompting
from .registry import EngineSpec
from .slice_embeddings import SliceEmbeddings
from .status import Status, one_line
from .tiled import TiledPlane, TiledSlices, needs_tiles
from .work import DecodeTimer, Job, Lane, Post, post_directly

__all__ = ["PREFETCH_IDLE_S", "AnnotationSession", "Status"]


class AnnotationSession(Prompting, Labelling, Prefetching):
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
        self._idle_timer = None
        self._tiles = TiledSlices(planes, self._tile_source())

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
        shown = self._ready[2] if self.embedding_ready else None
        return None if isinstance(shown, TiledPlane) else shown  # tiles: no one embedding of the plane

    @property
    def tiled(self) -> TiledPlane | None:
        """The slice shown when it is handled by tiles and ready for clicks (its tiling: ``.tiling``)."""
        shown = self._ready[2] if self.embedding_ready else None
        return shown if isinstance(shown, TiledPlane) else None

    def _tiled_plane(self) -> bool:
        """The image's planes are too large to embed whole for the model in use."""
        return self.engine is not None and needs_tiles(self.planes, self.engine)

    def _tile_source(self) -> EmbeddingSource:
        # Tiles are kept on disk as stacks are: a large plane's tiles take minutes in all.
        source = self.workspace.embeddings
        return source if self.workspace.store_stacks else EmbeddingSource(source.memory, None)

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
        text = f"Could not load model {spec.describe()}: {one_line(err)}"
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
        if self._tiled_plane():
            self._want_tiles(s)
            return
        embedding = self._embeddings.want(s, self.engine)
        if embedding is not None:
            self._on_ready(s, self.engine, embedding, "embedding in memory")
        else:
            self.say(f"{self.describe(s)}: embedding with {self._model_name()} …", "busy")

    def _want_tiles(self, s) -> None:
        """A plane handled by tiles: only its contrast is measured (once, in the embedding lane)."""
        engine = self.engine
        plane = self._tiles.at_hand(s, engine)
        if plane is not None:
            self._on_ready(s, engine, plane, plane.describe_ready())
            return
        lane = self._embeddings.lane
        running = lane.running
        lane.cancel(lambda job: job.user_waits and job is not running)  # the user moved on
        lane.submit(Job(
            lambda: self._tiles.prepare(s, engine),
            done=lambda plane: self._embedded(s, engine, plane, plane.describe_ready()),
            failed=lambda err: self._embed_failed(s, engine, err, True),
            tag=(s, engine),
        ))
        self._activity()
        self.say(f"{self.describe(s)}: a large plane, to be handled by tiles; measuring its contrast …", "busy")

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
        text = f"Could not embed {self.describe(s)} of {self.planes.name!r}: {one_line(err)}"
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
        if not isinstance(embedding, TiledPlane):
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

    # ------------------------------------------------------------------ the image
    def planes_changed(self, planes) -> None:
        """The image's pixels were replaced: every embedding identity is recomputed."""
        self.planes, self._ready = planes, None
        self._embeddings.forget_keys(planes)
        self._tiles.forget(planes)
        self.book.forget_results()
        if self._slice is not None and planes.lead_shape and len(self._slice) == len(planes.lead_shape):
            self.show_slice(tuple(min(i, n - 1) for i, n in zip(self._slice, planes.lead_shape)))

    def close(self) -> None:
        """The image is gone or the app closes: start nothing more, report nothing more."""
        self.closed = True
        self._stop_prefetching()
        for lane in (self._embeddings.lane, self._decode, self._loader):
            lane.close()

    def join(self, timeout: float = 30.0) -> bool:
        """Wait for running background jobs to end (tests, shutdown)."""
        return all(lane.join(timeout) for lane in (self._embeddings.lane, self._decode, self._loader))
