"""The annotator's link to the SAM engine: embed a plane, decode a prompt.

Two predictors share one model: one embeds in the background worker, the
other decodes prompts in napari's main thread. Each keeps its own "current
embedding", so a background embedding of the next slice can never change the
embedding the main thread is decoding from.

Tests replace :class:`SamEngine` by any object with the same four members
(``model_id``, ``embed``, ``decode``, ``mask_prompt``;
see tests/widgets/conftest.py); see tests/widgets. ``prepare`` is optional:
the annotator calls it, when present, as a slice's embedding is at hand.
No Qt or napari here.
"""

from __future__ import annotations

import numpy as np
import torch

from ..model import SamPredictor, load_model
from ..model.embedding import ImageEmbedding
from ..model.image import resized_shape
from ..prompts import DecodeRequest, mask_to_logits


class SamEngine:
    def __init__(self, model, device=None, precision: str = "auto", name: str | None = None) -> None:
        self.encoder = SamPredictor(model, device=device, precision=precision)
        # A twin shares the encoder predictor's weight copies (no second
        # low-precision encoder), so clicks are decoded in the engine's
        # precision: bf16 under "auto" on CPUs with native bf16, which made
        # the vit_b decoder about 1.2x faster per click than float32.
        self.decoder = self.encoder.twin()
        self.model = model
        self.name = name or model.weights_id
        self.model_id = model.weights_id
        self._decoding: ImageEmbedding | None = None
        self._warmed = False

    @classmethod
    def load(cls, name_or_path, device=None, precision: str = "auto") -> "SamEngine":
        """Load a zoo model by name or a checkpoint file (may download: call it off the main thread)."""
        dev = None if device in (None, "auto") else device
        model = load_model(name_or_path, device=dev)
        return cls(model, device=dev, precision=precision, name=str(name_or_path))

    @property
    def device(self) -> torch.device:
        return self.encoder.device

    def embed(self, plane, intensity_range=None) -> ImageEmbedding:
        """The heavy part; runs in the background worker."""
        return self.encoder.set_image(plane, intensity_range=intensity_range)

    def decode(self, embedding: ImageEmbedding, request: DecodeRequest):
        """(masks [3,H,W] bool, iou [3], low-res logits [3,h,w]) for one slice's prompt."""
        self._use(embedding)
        return self.decoder.predict(**request.predict_kwargs())

    def prepare(self, embedding: ImageEmbedding) -> None:
        """Get ready to decode clicks on this embedding (the slice now shown), before the first click.

        Does the decoder's prompt-independent work for it and, the first time
        only, decodes one dummy click: the first decode of a process also sets
        up the CPU kernels, which made the very first click the slowest.
        Main thread; a few ms, plus a few tens the first time.
        """
        self._use(embedding)
        self.decoder.prepare()
        if not self._warmed:
            self._warmed = True
            H, W = embedding.original_size
            self.decoder.predict(point_coords=[[W / 2, H / 2]], point_labels=[1])

    def _use(self, embedding: ImageEmbedding) -> None:
        if self._decoding is not embedding:
            self.decoder.set_embedding(embedding)
            self._decoding = embedding

    def mask_prompt(self, mask):
        """An existing object's mask (H, W of the plane) as SAM's (1, h, w) mask-prompt logits."""
        H, W = np.asarray(mask).shape[:2]
        return mask_to_logits(
            mask,
            resized_shape(H, W, self.model.image_size),
            self.model.image_size,
            tuple(self.model.prompt_encoder.mask_input_size),
        )
