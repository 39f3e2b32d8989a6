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


_shared: Workspace | None = None
_lock = threading.Lock()


def shared_workspace() -> Workspace:
    """The workspace of this process, with the per-user embedding store (created on first use)."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = Workspace(embeddings=EmbeddingSource(store=EmbeddingStore()))
        return _shared
