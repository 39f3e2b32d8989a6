"""Slice embeddings kept in memory, so stepping back and forth through a stack is instant.

An embedding is only valid for the exact pixels, model, preprocessing and
precision that made it. The cache key therefore holds every part of that
identity: the plane's fingerprint, the model's weights id, the preprocessing
rule and the precision the encoder ran in (and, not compared, the slice it
came from). Looking up a key with any part changed is
simply a miss, never a wrong embedding.

The cache is bounded in megabytes, not in entries: a vit_b embedding of one
slice is 4 MB, a tiny test model's a few kB. Least recently used entries go
first. It is shared between napari's main thread (look-ups while the user
clicks) and the background embedding worker (inserts), hence the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

#: Default memory budget: about 125 vit_b slice embeddings.
DEFAULT_BUDGET_MB = 512.0


@dataclass(frozen=True)
class EmbeddingKey:
    """What makes two slice embeddings interchangeable."""

    image: str  # napari_sam.fingerprint.array_fingerprint of the plane's pixels
    # Where the plane lies (the leading axes' indices; () for a 2D image): for messages only. Two
    # planes with the same pixels have the same embedding wherever they lie, so it is not compared.
    slice_index: tuple[int, ...] = field(compare=False)
    model_id: str  # Sam.weights_id
    preprocessing: str  # how pixels became uint8 RGB (e.g. the stack's intensity range)
    precision: str = "fp32"  # what the image encoder computed in: "fp32" or "bf16"

    def __post_init__(self):
        for name in ("image", "model_id", "preprocessing", "precision"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TypeError(f"EmbeddingKey.{name} must be a non-empty string, got {getattr(self, name)!r}")
        try:
            index = tuple(int(i) for i in self.slice_index)
        except (TypeError, ValueError):
            raise TypeError(f"EmbeddingKey.slice_index must be a tuple of integers, got {self.slice_index!r}") from None
        if any(i < 0 for i in index):
            raise ValueError(f"EmbeddingKey.slice_index must not be negative, got {index}")
        object.__setattr__(self, "slice_index", index)


def _size_of(embedding) -> int:
    size = getattr(embedding, "nbytes", None)
    if size is None:
        raise TypeError(f"cannot cache a {type(embedding).__name__}: it has no nbytes (expected an ImageEmbedding)")
    return int(size)


class EmbeddingCache:
    """Least-recently-used store of slice embeddings, bounded in megabytes."""

    def __init__(self, budget_mb: float = DEFAULT_BUDGET_MB) -> None:
        self._entries: OrderedDict[EmbeddingKey, object] = OrderedDict()
        self._lock = threading.Lock()
        self._nbytes = 0
        self.budget_mb = budget_mb

    @property
    def budget_mb(self) -> float:
        return self._budget / 2**20

    @budget_mb.setter
    def budget_mb(self, value: float) -> None:
        try:
            mb = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"the cache budget must be a number of megabytes, got {value!r}") from None
        if not mb >= 0:  # also rejects NaN
            raise ValueError(f"the cache budget must be >= 0 MB, got {value!r}")
        self._budget = int(mb * 2**20)
        with self._lock:
            self._evict()

    @property
    def nbytes(self) -> int:
        return self._nbytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: EmbeddingKey) -> bool:
        # A membership test is not a use: it does not refresh the entry.
        return key in self._entries

    def keys(self) -> list[EmbeddingKey]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._entries)

    def get(self, key: EmbeddingKey):
        """The embedding for ``key`` (and mark it as recently used), or None."""
        if not isinstance(key, EmbeddingKey):
            raise TypeError(f"cache keys are EmbeddingKey, got {type(key).__name__}")
        with self._lock:
            embedding = self._entries.get(key)
            if embedding is not None:
                self._entries.move_to_end(key)
            return embedding

    def put(self, key: EmbeddingKey, embedding) -> bool:
        """Store an embedding; returns False when it alone is larger than the whole budget."""
        if not isinstance(key, EmbeddingKey):
            raise TypeError(f"cache keys are EmbeddingKey, got {type(key).__name__}")
        size = _size_of(embedding)
        with self._lock:
            self._drop(key)
            if size > self._budget:
                return False
            self._entries[key] = embedding
            self._nbytes += size
            self._evict()
            return True

    def discard(self, key: EmbeddingKey) -> None:
        with self._lock:
            self._drop(key)

    def discard_where(self, predicate) -> int:
        """Drop every entry whose key satisfies ``predicate``; returns how many."""
        with self._lock:
            doomed = [k for k in self._entries if predicate(k)]
            for k in doomed:
                self._drop(k)
            return len(doomed)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._nbytes = 0

    # The two helpers below expect the lock to be held.
    def _drop(self, key: EmbeddingKey) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._nbytes -= _size_of(old)

    def _evict(self) -> None:
        while self._nbytes > self._budget and self._entries:
            _, old = self._entries.popitem(last=False)
            self._nbytes -= _size_of(old)
