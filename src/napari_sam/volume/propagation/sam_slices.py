"""Answering slice prompts with SAM, from a stack's cached (or freshly computed) embeddings."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...geometry import mask_iou
from .results import PropagationResult
from .slices import SlicePrompt, SliceSegmentation
from .walk import propagate

PICKS = ("single", "agreement", "shape")


class SamSliceSegmenter:
    """Answers slice prompts with SAM, using a :class:`~napari_sam.volume.StackEmbeddings`.

    Embeddings come from memory or the disk cache, or are computed (and saved)
    when a walk first reaches a slice. ``pick="single"`` asks SAM for one mask;
    ``pick="agreement"`` asks for its three candidates and keeps the one that
    overlaps the previous slice's mask most; ``pick="shape"`` keeps the one
    that overlaps the expected mask most (the previous mask grown or shrunk
    as the object changed over the last two slices).
    """

    def __init__(self, embeddings, pick: str = "single"):
        if not hasattr(embeddings, "get") or not hasattr(embeddings, "predictor"):
            raise TypeError(f"expected a StackEmbeddings, got {type(embeddings).__name__}")
        if pick not in PICKS:
            raise ValueError(f"pick must be one of {PICKS}, got {pick!r}")
        self.embeddings = embeddings
        self.predictor = embeddings.predictor
        self.pick = pick

    def __len__(self) -> int:
        return len(self.embeddings)

    def slice_image(self, index: int) -> np.ndarray:
        """The slice's pixels, for fitting masks to the object's signal."""
        return self.embeddings.slice_image(index)

    def segment(self, index: int, prompt: SlicePrompt) -> SliceSegmentation:
        from ..embed_stack import keep_current_image

        embedding = self.embeddings.get(index)
        multimask = self.pick != "single"
        with keep_current_image(self.predictor):
            self.predictor.set_embedding(embedding)
            masks, scores, low_res = self.predictor.predict(
                point_coords=prompt.points,
                point_labels=prompt.point_labels,
                box=prompt.box,
                mask_input=prompt.mask_input,
                multimask_output=multimask,
            )
        best = 0
        if multimask:
            wanted = prompt.previous_mask
            if self.pick == "shape" and prompt.expected_mask is not None:
                wanted = prompt.expected_mask
            best = int(np.argmax([mask_iou(m, wanted) for m in masks]))
        return SliceSegmentation(masks[best], low_res[best : best + 1], float(scores[best]))


def propagate_with_sam(
    predictor,
    stack,
    annotations: Mapping[int, np.ndarray],
    store=None,
    *,
    embeddings=None,
    pick: str = "single",
    **options,
) -> PropagationResult:
    """:func:`propagate` with SAM on ``stack`` (reusing ``embeddings``, a StackEmbeddings, if given).

    ``store`` (an EmbeddingStore) provides cached embeddings and keeps the ones
    computed on the way; ``options`` are those of :func:`propagate`.
    """
    from ..embed_stack import StackEmbeddings

    if embeddings is None:
        embeddings = StackEmbeddings(predictor, stack, store)
    elif embeddings.predictor is not predictor:
        raise ValueError("the StackEmbeddings given belongs to another predictor")
    return propagate(SamSliceSegmenter(embeddings, pick=pick), annotations, len(embeddings), **options)
