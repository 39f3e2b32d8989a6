"""3D stacks: slice embeddings that persist on disk, and objects followed from slice to slice.

* :mod:`.store` — the on-disk embedding cache (:class:`EmbeddingStore`).
* :mod:`.embed_stack` — embedding a whole stack, resumable and cancellable.
* :mod:`.propagation` — segmenting an object through neighbouring slices (:mod:`.propagate` keeps its names).
* :mod:`.stack` — checking stacks and taking one stack out of a 4D image.
* :mod:`.commit` — which voxels a propagated object may set in a label volume.
* :mod:`.cli` — the ``embed`` command line.

Torch + numpy only, like :mod:`napari_sam.model`: usable without napari.
"""

from .commit import object_paint_indices, to_image_indices
from .embed_stack import EmbedResult, StackEmbeddings, embed_stack, iter_stack_embeddings
from .propagate import (
    PropagationResult,
    SamSliceSegmenter,
    SlicePrompt,
    SliceSegmentation,
    SliceSegmenter,
    annotations_from_labels,
    propagate,
    propagate_with_sam,
)
from .stack import check_stack, stack_through
from .store import CacheWriteError, EmbeddingStore, SliceKey, default_folder

__all__ = [
    "CacheWriteError",
    "EmbedResult",
    "EmbeddingStore",
    "PropagationResult",
    "SamSliceSegmenter",
    "SlicePrompt",
    "SliceSegmentation",
    "SliceSegmenter",
    "SliceKey",
    "StackEmbeddings",
    "annotations_from_labels",
    "check_stack",
    "default_folder",
    "embed_stack",
    "iter_stack_embeddings",
    "object_paint_indices",
    "propagate",
    "propagate_with_sam",
    "stack_through",
    "to_image_indices",
]
