"""What the session needs from a SAM model, and the real one.

:class:`Engine` is the interface, written down: the session, the docks and the
tests' stand-ins all go through it. :class:`SamEngine` is our SAM behind it.

Threads: the session embeds in one background lane and decodes in another
(see :mod:`.work`). ``embed`` is only ever called from the embed lane and
``prepare``/``decode`` only from the decode lane, so each of the two
predictors inside a :class:`SamEngine` is used by one thread at a time, and a
background embedding of the next slice can never change the embedding the
decoder is working on. Other work (stack embedding, propagation, automatic
segmentation) takes a predictor of its own with :meth:`SamEngine.new_predictor`.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import numpy as np

from ..model import SamPredictor, load_model
from ..model.embedding import ImageEmbedding
from ..model.image import resized_shape
from ..prompts import DecodeRequest, mask_to_logits


@runtime_checkable
class Engine(Protocol):
    """A loaded model, ready to embed planes and decode prompts."""

    name: str  # what the user chose: a zoo name or a checkpoint path
    model_id: str  # the weights' identity (part of every embedding's identity)
    precision: str  # what embeddings are computed in: "fp32", "bf16" or "int8"
    precision_reason: str  # one line: the precision and why (auto's choice on this machine)

    def embed(self, plane, intensity_range=None) -> ImageEmbedding:
        """The image encoder on one 2D (or RGB) plane: seconds. Embed lane only."""

    def prepare(self, embedding: ImageEmbedding) -> None:
        """Get ready to decode prompts on ``embedding``: the decoder's per-image work. Decode lane only."""

    def decode(self, embedding: ImageEmbedding, request: DecodeRequest):
        """``(masks [3,H,W] bool, iou [3], low-res logits [3,h,w])`` for one prompt. Decode lane only."""

    def mask_prompt(self, mask) -> np.ndarray:
        """An existing object's mask (H, W of the plane) as SAM's (1, h, w) mask-prompt logits."""


class SamEngine:
    """Our SAM: one model, an encoder predictor and a decoder twin sharing its weight copies."""

    def __init__(self, model, device=None, precision: str = "auto", name: str | None = None) -> None:
        self.encoder = SamPredictor(model, device=device, precision=precision)
        # A twin shares the encoder predictor's low-precision weight copies
        # (no second bf16 encoder in memory), so clicks are decoded in the
        # engine's precision: bf16 under "auto" on CPUs with native bf16,
        # which made a vit_b click about 1.2x faster than in float32.
        self.decoder = self.encoder.twin()
        self.model = model
        self.name = name or model.weights_id
        self.model_id = model.weights_id
        self.precision = self.encoder.embedding_precision
        # One line for the status bar: what "auto" chose on this machine and why.
        self.precision_reason = self.encoder.precision_reason
        self.device = str(self.encoder.device)
        self._decoding: ImageEmbedding | None = None
        self._warmed = False
        # Several lanes may embed with one engine (the annotator's slice, "Embed stack"): the
        # encoder predictor keeps one current image, and the CPU is full with one pass anyway.
        self._encoding = threading.Lock()

    @classmethod
    def load(cls, name_or_path, device=None, precision: str = "auto") -> "SamEngine":
        """Load a zoo model by name or a checkpoint file (may download: call it off the main thread)."""
        dev = None if device in (None, "auto") else device
        model = load_model(name_or_path, device=dev)
        return cls(model, device=dev, precision=precision, name=str(name_or_path))

    def new_predictor(self) -> SamPredictor:
        """A predictor of its own for other background work, sharing this engine's weights."""
        return self.encoder.twin()

    def embed(self, plane, intensity_range=None) -> ImageEmbedding:
        with self._encoding:
            return self.encoder.set_image(plane, intensity_range=intensity_range)

    def prepare(self, embedding: ImageEmbedding) -> None:
        """The decoder's prompt-independent work for this embedding, and a warm-up the first time.

        The first decode of a process also sets up the CPU kernels, which
        made the very first click the slowest: a dummy click does it here,
        in the decode lane, before the user clicks.
        """
        with self.decoder.foreground.hold():
            self._use(embedding)
            self.decoder.prepare()
            if not self._warmed:
                self._warmed = True
                H, W = embedding.original_size
                self.decoder.predict(point_coords=[[W / 2, H / 2]], point_labels=[1])

    def decode(self, embedding: ImageEmbedding, request: DecodeRequest):
        # The user waits for this: an embedding running beside it pauses (model/foreground.py).
        with self.decoder.foreground.hold():
            self._use(embedding)
            return self.decoder.predict(**request.predict_kwargs())

    def _use(self, embedding: ImageEmbedding) -> None:
        if self._decoding is not embedding:
            self.decoder.set_embedding(embedding)
            self._decoding = embedding

    def mask_prompt(self, mask) -> np.ndarray:
        H, W = np.asarray(mask).shape[:2]
        return mask_to_logits(
            mask,
            resized_shape(H, W, self.model.image_size),
            self.model.image_size,
            tuple(self.model.prompt_encoder.mask_input_size),
        )
