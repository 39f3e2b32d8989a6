"""Embedding every slice of a stack once: from the disk cache where possible, computed otherwise.

:class:`StackEmbeddings` hands out the embedding of any slice on demand
(memory, then the :class:`~napari_sam.volume.store.EmbeddingStore`, then the
image encoder, saving what it computed). :func:`embed_stack` walks all
slices with a progress callback and a cancel check between slices; as each
computed slice is saved at once, a cancelled or crashed run resumes where
it stopped. Two programs embedding into one store share the work: a slice
is computed under a claim (:mod:`.claims`), and a slice claimed by the other
program is read from the store once it is done.

All slices of a stack are scaled to 8 bits with one intensity range
(:func:`napari_sam.model.image.stack_intensity_range`), so neighbouring
slices look alike to the model and a slice's embedding does not depend on
which slices were embedded first.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..embedding_cache import EmbeddingCache, EmbeddingKey
from ..embeddings import COMPUTED, FROM_DISK, EmbeddingSource, Found, slice_key, store_key
from ..model.embedding import ImageEmbedding
from ..model.image import stack_intensity_range
from ..progress import CancelCheck, ProgressCallback
from .stack import check_stack
from .store import CacheWriteError, EmbeddingStore, SliceKey, is_persistent_model_id

logger = logging.getLogger(__name__)



class StackEmbeddings:
    """Embeddings of the slices of one stack for one predictor: a view of :class:`~napari_sam.embeddings.EmbeddingSource`.

    Parameters
    ----------
    predictor : SamPredictor
    stack : (slices, rows, columns[, 3|4]) array (numpy, dask, zarr ...)
    store : EmbeddingStore or None
        Where embeddings persist; None keeps them in memory only.
    intensity_range : "stack", None or (low, high)
        "stack" (default): one range for the whole stack; None: each slice's own
        percentiles; or a range given by the caller (napari's contrast limits).
    rgb : the slices are RGB(A) (last axis).
    cache_errors : "warn" (default) or "raise"
        What to do when an embedding cannot be saved (disk full, folder not
        writable): warn once and go on in memory, or raise CacheWriteError.
    keep_in_memory : keep every slice's embedding in memory once used (fast
        back-and-forth), or only read it from the store when asked.
    source : an EmbeddingSource to share (the annotator's memory and store);
        ``store`` and ``keep_in_memory`` are then the source's.
    """

    def __init__(
        self,
        predictor,
        stack,
        store: EmbeddingStore | None = None,
        *,
        intensity_range="stack",
        rgb: bool = False,
        cache_errors: str = "warn",
        keep_in_memory: bool = True,
        source: EmbeddingSource | None = None,
    ):
        if not hasattr(predictor, "set_image") or not hasattr(predictor, "model"):
            raise TypeError(f"expected a SamPredictor, got {type(predictor).__name__}")
        if store is not None and not isinstance(store, EmbeddingStore):
            raise TypeError(f"store must be an EmbeddingStore or None, got {type(store).__name__}")
        if cache_errors not in ("warn", "raise"):
            raise ValueError(f"cache_errors must be 'warn' or 'raise', got {cache_errors!r}")
        self.predictor = predictor
        self.stack = check_stack(stack, rgb=rgb)
        self.cache_errors = cache_errors
        if isinstance(intensity_range, str):
            if intensity_range != "stack":
                raise ValueError(f"intensity_range must be 'stack', None or (low, high), got {intensity_range!r}")
            intensity_range = None if rgb else stack_intensity_range(np.asarray(self.stack))
        self.intensity_range = intensity_range
        self.encoder = _PredictorEncoder(predictor)
        model_id = self.encoder.model_id
        if store is not None and not is_persistent_model_id(model_id):
            logger.warning("model %s has no checkpoint hash: embeddings are kept in memory only", model_id)
            store = None
        if source is None:
            # Every slice kept once used (a stack's embeddings are a few MB each), or none.
            source = EmbeddingSource(EmbeddingCache(_UNBOUNDED_MB if keep_in_memory else 0.0), store,
                                     raise_store_errors=cache_errors == "raise")
        self.source = source
        self._keys: dict[int, EmbeddingKey] = {}
        self._warned = False
        self.computed = 0  # slices run through the image encoder by this object
        self.loaded = 0  # slices read from the store

    @property
    def store(self) -> EmbeddingStore | None:
        return self.source.store

    def __len__(self) -> int:
        return int(self.stack.shape[0])

    @property
    def slice_shape(self) -> tuple[int, int]:
        return int(self.stack.shape[1]), int(self.stack.shape[2])

    @property
    def store_error(self) -> CacheWriteError | None:
        """The error that stopped saving to the store, if any (embeddings were then kept in memory)."""
        return self.source.store_error

    def _check_index(self, index) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"slice index must be an integer, got {index!r}")
        n = len(self)
        if not -n <= index < n:
            raise ValueError(f"slice {index} does not exist: the stack has {n} slices (0 to {n - 1})")
        return int(index) % n

    def slice_image(self, index: int) -> np.ndarray:
        return np.asarray(self.stack[self._check_index(index)])

    def _key(self, index: int) -> EmbeddingKey:
        index = self._check_index(index)
        if index not in self._keys:
            self._keys[index] = slice_key(self.slice_image(index), (index,), self.encoder, self.intensity_range)
        return self._keys[index]

    def key(self, index: int) -> SliceKey:
        """The identity of slice ``index``'s embedding in the store (pixels, model, rule, precision)."""
        return store_key(self._key(index))

    def _count(self, found: Found | None) -> ImageEmbedding | None:
        if found is None:
            return None
        if found.origin == COMPUTED:
            self.computed += 1
        elif found.origin == FROM_DISK:
            self.loaded += 1
        if self.source.store_error is not None and not self._warned:
            self._warned = True
            warnings.warn(f"{self.source.store_error}; embeddings of this stack are kept in memory only",
                          RuntimeWarning, stacklevel=3)
        return found.embedding

    def cached(self, index: int) -> ImageEmbedding | None:
        """The embedding of slice ``index`` from memory or the store, without computing it."""
        return self._count(self.source.cached(self._key(index), self.slice_shape))

    def is_available(self, index: int) -> bool:
        """True when slice ``index`` needs no encoder run (in memory or validly stored)."""
        return self.source.is_available(self._key(index), self.slice_shape)

    def missing(self, indices: Iterable[int] | None = None) -> list[int]:
        """The slices (of ``indices``, default all) that would have to be computed."""
        indices = range(len(self)) if indices is None else indices
        return [i for i in (self._check_index(i) for i in indices) if not self.is_available(i)]

    def get(self, index: int) -> ImageEmbedding:
        """The embedding of slice ``index``: from memory or the store, else computed and saved.

        While another process computes this slice into the same store (it holds
        the slice's claim, :mod:`.claims`), wait for its entry instead.
        """
        return self.claimed(index, wait=True)

    def claimed(self, index: int, *, wait: bool, should_cancel: CancelCheck | None = None) -> ImageEmbedding | None:
        """The embedding, computed here under the slice's claim or read when another process finished it.

        With ``wait=False`` returns None at once when another process holds the
        claim; with ``wait=True`` polls until the entry appears, the claim is
        given up (then computes it here) or ``should_cancel()`` (then None).
        """
        index = self._check_index(index)
        try:
            found = self.source.get(self._key(index), self.slice_image(index), self.encoder, self.intensity_range,
                                    wait=wait, should_cancel=should_cancel)
        except (ValueError, TypeError, OSError, MemoryError) as err:
            if isinstance(err, CacheWriteError):
                raise
            raise _naming_slice(err, index) from err
        return self._count(found)

    def compute(self, index: int) -> ImageEmbedding:
        """Run the image encoder on slice ``index`` (even if stored) and save the result."""
        index = self._check_index(index)
        try:
            found = self.source.compute(self._key(index), self.slice_image(index), self.encoder, self.intensity_range)
        except (ValueError, TypeError, OSError, MemoryError) as err:
            if isinstance(err, CacheWriteError):
                raise
            raise _naming_slice(err, index) from err
        return self._count(found)


class _PredictorEncoder:
    """A SamPredictor as the encoder of :class:`~napari_sam.embeddings.EmbeddingSource` (keeping its current image)."""

    def __init__(self, predictor) -> None:
        self.predictor = predictor
        self.model_id = predictor.model.weights_id
        # Predictors that predate ImageEmbedding.precision (test stand-ins) compute in fp32.
        self.precision = getattr(predictor, "embedding_precision", "fp32")

    def embed(self, plane, intensity_range=None) -> ImageEmbedding:
        with keep_current_image(self.predictor):
            return self.predictor.set_image(plane, intensity_range=intensity_range)


# A stack kept whole in memory: every slice once used (the budget of the source's memory cache).
_UNBOUNDED_MB = float(2**40)


def _naming_slice(err: BaseException, index: int) -> BaseException:
    """The same kind of error, its message starting with the slice it happened on."""
    message = f"slice {index}: {err}"
    try:
        if isinstance(err, OSError) and err.errno is not None:
            return type(err)(err.errno, f"slice {index}: {err.strerror}")
        return type(err)(message)
    except TypeError:  # an exception class with another constructor
        return RuntimeError(message)


@contextmanager
def keep_current_image(predictor):
    """Give the predictor back the image it had before (the slice the user is looking at).

    Embedding or decoding other slices goes through the predictor's "current
    image"; restoring it keeps interactive clicks on the shown slice working
    after a stack was embedded or propagated in the same thread. (Work in a
    background thread needs its own SamPredictor on the same model.)
    """
    previous = predictor.embedding if predictor.is_image_set else None
    try:
        yield
    finally:
        if previous is None:
            predictor.reset_image()
        else:
            predictor.set_embedding(previous)


@dataclass
class SliceEmbedding:
    index: int
    embedding: ImageEmbedding
    computed: bool  # False: loaded from memory or the store


@dataclass
class EmbedResult:
    """What :func:`embed_stack` did."""

    embeddings: dict[int, ImageEmbedding] = field(default_factory=dict)  # slice index -> embedding
    computed: list[int] = field(default_factory=list)  # slices run through the encoder
    loaded: list[int] = field(default_factory=list)  # slices found in the cache
    cancelled: bool = False
    total: int = 0

    @property
    def complete(self) -> bool:
        return not self.cancelled and len(self.computed) + len(self.loaded) == self.total


def iter_stack_embeddings(
    embeddings: StackEmbeddings,
    indices: Iterable[int] | None = None,
    *,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
) -> Iterator[SliceEmbedding]:
    """Yield each slice's embedding in turn, loading cached ones and computing the others.

    ``progress(done, total)`` is called before the first slice and after each one;
    ``should_cancel()`` is asked before each slice and ends the iteration when True.
    """
    indices = list(range(len(embeddings))) if indices is None else [embeddings._check_index(i) for i in indices]
    indices = list(dict.fromkeys(indices))
    total = len(indices)
    if progress is not None:
        progress(0, total)
    done = 0
    # Slices another process is computing into the same store come last: by then they are usually done.
    later = []
    for waiting, order in ((False, indices), (True, later)):
        for i in order:
            if should_cancel is not None and should_cancel():
                return
            emb = embeddings.cached(i)
            computed = False
            if emb is None:
                runs = embeddings.computed
                emb = embeddings.claimed(i, wait=waiting, should_cancel=should_cancel)
                if emb is None:
                    if waiting:  # cancelled while waiting
                        return
                    later.append(i)
                    continue
                computed = embeddings.computed > runs
            done += 1
            yield SliceEmbedding(i, emb, computed)
            if progress is not None:
                progress(done, total)


def embed_stack(
    predictor,
    stack,
    store: EmbeddingStore | None = None,
    *,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    intensity_range="stack",
    rgb: bool = False,
    indices: Iterable[int] | None = None,
    cache_errors: str = "warn",
    keep: bool = True,
) -> EmbedResult:
    """Embed every slice of ``stack`` (or ``indices``), computing only those not cached in ``store``.

    Returns an :class:`EmbedResult`; when ``should_cancel()`` turned True the
    result has ``cancelled=True`` and holds the slices done so far (all of them
    already saved, so calling again resumes). ``keep=False`` leaves
    ``result.embeddings`` empty (only the cache is filled; saves memory for the
    command line). Pass a :class:`StackEmbeddings` as ``stack`` to reuse its
    memory (then ``store``, ``intensity_range`` and ``rgb`` are its own).
    """
    if isinstance(stack, StackEmbeddings):
        embeddings = stack
        if embeddings.predictor is not predictor:
            raise ValueError("the StackEmbeddings given belongs to another predictor")
    else:
        embeddings = StackEmbeddings(
            predictor, stack, store, intensity_range=intensity_range, rgb=rgb, cache_errors=cache_errors,
            keep_in_memory=keep,
        )
    wanted = list(range(len(embeddings))) if indices is None else list(indices)
    result = EmbedResult(total=len(dict.fromkeys(embeddings._check_index(i) for i in wanted)))
    for item in iter_stack_embeddings(embeddings, wanted, progress=progress, should_cancel=should_cancel):
        if keep:
            result.embeddings[item.index] = item.embedding
        (result.computed if item.computed else result.loaded).append(item.index)
    done = len(result.computed) + len(result.loaded)
    result.cancelled = done < result.total
    return result
