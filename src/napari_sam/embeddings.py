"""Where a plane becomes an embedding: one lookup chain for every dock and command.

memory (an LRU bounded in MB) -> the on-disk store -> the image encoder.

The annotator's session, "Embed stack", propagation, automatic segmentation
and the ``embed`` command all take embeddings from here
(:class:`~napari_sam.volume.StackEmbeddings` is a view of it for one stack).

What the encoder computes goes into memory and into the store, so a stack
embedded with "Embed stack" or the ``embed`` command is what the annotator
reads, and reopening napari tomorrow on the same stack embeds nothing again.
An entry is found only under its full identity (:func:`slice_key`): the
plane's pixels, the model's weights, the preprocessing rule and the precision.

When the store cannot be written (folder read-only, disk full) the source
goes on from memory and says so once (:attr:`EmbeddingSource.store_error`);
nothing is lost but the time to compute the embedding again next session.

Two programs filling one store compute each slice once: a slice is
computed under a claim file (:mod:`napari_sam.volume.claims`), and a slice
another program has claimed is read from the store when it is done.

Thread-safe; its slow methods (reading a plane, fingerprinting it, the disk,
the encoder) are meant for background lanes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .embedding_cache import DEFAULT_BUDGET_MB, EmbeddingCache, EmbeddingKey
from .fingerprint import array_fingerprint
from .model.embedding import ImageEmbedding
from .model.image import image_rule

if TYPE_CHECKING:
    from .volume.store import CacheWriteError, EmbeddingStore, SliceKey


def _store_module():
    """napari_sam.volume.store, imported when first needed: the volume package (its StackEmbeddings is
    a view of this lookup chain) imports this module, so importing the store here at once would be circular."""
    from .volume import store

    return store

#: Seconds between looks at a slice another program is computing into the same store.
CLAIM_POLL_S = 0.25

logger = logging.getLogger(__name__)

#: Where an embedding came from, as the status line tells the user.
FROM_MEMORY, FROM_DISK, COMPUTED = "memory", "disk", "computed"


@dataclass(frozen=True)
class Found:
    embedding: ImageEmbedding
    origin: str  # FROM_MEMORY, FROM_DISK or COMPUTED


def slice_key(plane, slice_index, engine, intensity_range) -> EmbeddingKey:
    """The identity of ``plane``'s embedding by ``engine`` under the image's intensity rule."""
    rule = image_rule(plane, intensity_range)
    return EmbeddingKey(
        image=array_fingerprint(plane),
        slice_index=tuple(slice_index),
        model_id=engine.model_id,
        preprocessing=rule,
        precision=engine.precision,
    )


def store_key(key: EmbeddingKey) -> SliceKey:
    return _store_module().SliceKey(key.image, key.model_id, key.preprocessing, key.precision)


class EmbeddingSource:
    """Memory, then disk, then the encoder; shared by every session of a workspace."""

    def __init__(self, memory: EmbeddingCache | None = None, store: EmbeddingStore | None = None, *,
                 raise_store_errors: bool = False) -> None:
        self.memory = memory if memory is not None else EmbeddingCache(DEFAULT_BUDGET_MB)
        self._store = store
        # False: a store that cannot be written is reported once and the work goes on from memory.
        self.raise_store_errors = raise_store_errors
        self._lock = threading.Lock()
        self.store_error: CacheWriteError | None = None
        self.encoder_calls = 0  # embeddings computed through this source
        self.disk_reads = 0  # embeddings found in the store

    # ------------------------------------------------------------------ the store
    @property
    def store(self) -> EmbeddingStore | None:
        return self._store

    def use_store(self, store: EmbeddingStore | None) -> None:
        """Read and write ``store`` from now on (None: memory only)."""
        with self._lock:
            self._store = store
            self.store_error = None

    # ------------------------------------------------------------------ lookups
    def in_memory(self, key: EmbeddingKey) -> ImageEmbedding | None:
        """Memory only: fast enough for the thread that draws napari."""
        return self.memory.get(key)

    def cached(self, key: EmbeddingKey, plane_shape=None, *, use_store: bool = True) -> Found | None:
        """Memory, then disk; never the encoder. ``plane_shape`` (H, W) guards against a wrong entry."""
        emb = self.memory.get(key)
        if emb is not None:
            return Found(emb, FROM_MEMORY)
        store = self._store if use_store else None
        if store is None or not _store_module().is_persistent_model_id(key.model_id):
            return None
        emb = store.get(store_key(key), original_size=None if plane_shape is None else tuple(plane_shape[:2]))
        if emb is None:
            return None
        with self._lock:
            self.disk_reads += 1
        self.memory.put(key, emb)
        return Found(emb, FROM_DISK)

    def get(self, key: EmbeddingKey, plane, engine, intensity_range, *, use_store: bool = True, wait: bool = True,
            should_cancel: Callable[[], bool] | None = None) -> Found | None:
        """The embedding for ``key``: from memory or disk, else computed from ``plane`` and saved.

        ``engine`` is anything with ``embed(plane, intensity_range)``, ``model_id`` and ``precision``.
        While another program computes this slice into the same store, its entry is
        waited for (``wait=False``: None at once; ``should_cancel()`` True: None).
        """
        shape = np.shape(plane)[:2]
        found = self.cached(key, shape, use_store=use_store)
        if found is not None:
            return found
        store = self._store if use_store and _store_module().is_persistent_model_id(key.model_id) else None
        if store is None:
            return self.compute(key, plane, engine, intensity_range, use_store=use_store)
        while True:
            claim = store.claim(store_key(key))
            if claim is not None:
                try:
                    found = self.cached(key, shape)  # finished by the other program just before we claimed it
                    return found or self.compute(key, plane, engine, intensity_range)
                finally:
                    claim.release()
            if not wait or (should_cancel is not None and should_cancel()):
                return None
            time.sleep(CLAIM_POLL_S)
            found = self.cached(key, shape)
            if found is not None:
                return found

    def compute(self, key: EmbeddingKey, plane, engine, intensity_range, *, use_store: bool = True) -> Found:
        """Run the encoder on ``plane`` (whatever the caches hold), keep the result in memory and the store."""
        emb = engine.embed(plane, intensity_range).to("cpu")
        with self._lock:
            self.encoder_calls += 1
        if (emb.preprocessing, emb.model_id, emb.precision) != (key.preprocessing, key.model_id, key.precision):
            # Cannot happen with napari_sam.model.image's rule; guards a future change of it.
            raise RuntimeError(f"the encoder made a {emb.precision} embedding with rule {emb.preprocessing!r}, "
                               f"expected {key.precision} with {key.preprocessing!r}")
        if use_store and self._will_save(key):
            # The numbers the store will give back (float16): a slice then decodes the same whether it was
            # computed now or read later, after napari was closed and opened again.
            emb = replace(emb, features=_store_module().entry_format.as_stored(emb.features))
        self.memory.put(key, emb)
        if use_store:
            self._save(key, emb)
        return Found(emb, COMPUTED)

    def _will_save(self, key: EmbeddingKey) -> bool:
        return (self._store is not None and self.store_error is None
                and _store_module().is_persistent_model_id(key.model_id))

    def is_available(self, key: EmbeddingKey, plane_shape=None) -> bool:
        """True when ``key`` needs no encoder run (in memory, or a valid entry in the store)."""
        if key in self.memory:
            return True
        store = self._store
        return (store is not None and _store_module().is_persistent_model_id(key.model_id)
                and store.contains(store_key(key), original_size=plane_shape))

    def _save(self, key: EmbeddingKey, emb: ImageEmbedding) -> None:
        if not self._will_save(key):
            return
        try:
            self._store.put(store_key(key), emb)
        except _store_module().CacheWriteError as err:
            if self.raise_store_errors:
                raise
            with self._lock:
                if self.store_error is None:
                    self.store_error = err
                    logger.warning("%s; embeddings are kept in memory only", err)


def plane_and_key(planes, slice_index, engine) -> tuple[np.ndarray, EmbeddingKey]:
    """Read one plane of an :class:`~.planes.ImagePlanes` and the key of its embedding (background lanes)."""
    plane = planes.read(slice_index)
    return plane, slice_key(plane, slice_index, engine, planes.intensity_range())
