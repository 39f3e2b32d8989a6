"""An image embedding and everything needed to decode prompts from it later.

The embedding alone is not enough: prompts are given in pixels of the
original image, so we also keep the original size and the size it was resized
to. The model's weights id, the preprocessing rule and the precision the
encoder computed in make the embedding's identity: decoding with another
model, or reusing it for an image prepared another way, would give silently
wrong masks (and a bf16 or int8 embedding is not the fp32 one asked for).
"""

from dataclasses import dataclass, replace

import torch

#: The precisions an embedding can be computed in.
PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class ImageEmbedding:
    features: torch.Tensor  # (1, C, h, w) float
    original_size: tuple[int, int]  # (H, W) of the image the user gave
    input_size: tuple[int, int]  # (h, w) after resizing the longest side to the model's input size
    model_id: str  # Sam.weights_id of the model that made it
    preprocessing: str  # the rule of napari_sam.model.image that made the uint8 RGB input
    # What the image encoder computed in ("fp32", "bf16" or "int8"): bf16 differs from
    # fp32 by about 0.6 %, int8 (linear layers) by 1-2 %.
    precision: str = "fp32"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.features, torch.Tensor) or self.features.ndim != 4 or self.features.shape[0] != 1:
            shape = getattr(self.features, "shape", None)
            raise ValueError(f"embedding features must be a (1, C, h, w) tensor, got {shape}")
        for name in ("original_size", "input_size"):
            size = getattr(self, name)
            if len(size) != 2 or min(size) < 1:
                raise ValueError(f"{name} must be (height, width) with positive sides, got {size!r}")
        object.__setattr__(self, "original_size", tuple(int(v) for v in self.original_size))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))

    def check_finite(self, what: str = "the embedding") -> None:
        """Raise a ValueError if a feature is NaN or infinite (every mask decoded from it would be empty)."""
        if not bool(torch.isfinite(self.features).all()):
            raise ValueError(
                f"{what} holds NaN or infinite values (model {self.model_id}): masks decoded from it would be "
                "empty; the model's weights are broken, or (in bf16) out of range: try precision='fp32'"
            )

    def to(self, device=None, dtype=None) -> "ImageEmbedding":
        return replace(self, features=self.features.to(device=device, dtype=dtype))

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()
