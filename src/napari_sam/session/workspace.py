"""What every dock of a napari process shares: loaded models and embeddings.

A :class:`Workspace` holds the :class:`~.registry.EngineRegistry` (each model
loaded once) and the :class:`~.embeddings.EmbeddingSource` (one memory cache,
one folder on disk). The docks take the process's workspace
(:func:`shared_workspace`) unless they are given another one, as tests do.
It holds no per-image state: that is the :class:`~.session.AnnotationSession`'s.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..volume import StackEmbeddings
from ..volume.store import EmbeddingStore
from ..embeddings import EmbeddingSource
from .registry import EngineRegistry


@dataclass
class Workspace:
    engines: EngineRegistry = field(default_factory=EngineRegistry)
    embeddings: EmbeddingSource = field(default_factory=EmbeddingSource)
    # Stacks are embedded slice by slice over minutes; keeping their embeddings on
    # disk makes the next session (or the annotator after "Embed stack") instant.
    # A single 2D image is embedded in seconds and is not stored.
    store_stacks: bool = True

    def use_store_for(self, planes) -> bool:
        return self.store_stacks and planes.is_stack and self.embeddings.store is not None

    def stack_embeddings(self, session, index: tuple) -> StackEmbeddings:
        """The embeddings of the stack ``planes.data[index]`` of ``session``'s image, for a job over many slices.

        They come from this workspace's lookup chain, the one the annotator uses
        (memory only when stacks are not kept on disk). ValueError says what is missing.
        """
        if session is None:
            raise ValueError("choose a 3D image layer (2D images have no slices to walk through)")
        if session.engine is None:
            raise ValueError("load a model first (Load model, in this dock or in SAM Annotator)")
        planes, source = session.planes, self.embeddings
        if not self.use_store_for(planes):
            source = EmbeddingSource(source.memory, None)  # the same memory, nothing on disk
        return StackEmbeddings(session.engine.new_predictor(), planes.data[index], rgb=planes.rgb,
                               intensity_range=planes.intensity_range(), source=source)


_shared: Workspace | None = None
_lock = threading.Lock()


def shared_workspace() -> Workspace:
    """The workspace of this process, with the per-user embedding store (created on first use)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = Workspace(embeddings=EmbeddingSource(store=EmbeddingStore()))
        return _shared
