"""The SAM model: image encoder + prompt encoder + mask decoder in one module.

Its ``state_dict`` has exactly the keys of the official checkpoints
(``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``); the pixel
mean/std are buffers that are not saved, as in those files.
"""

import torch
from torch import nn

# ImageNet statistics in 0-255 units, what SAM was trained with.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    def __init__(self, image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module, config=None) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)
        # Filled by load_model(); identify the weights an embedding was made with.
        self.model_name = config.model_type if config is not None else "custom"
        self.checkpoint_path = None
        self.checkpoint_sha256 = None

    @property
    def image_size(self) -> int:
        """Side of the square input the encoder takes (1024 for the official models)."""
        return self.prompt_encoder.input_image_size[0]

    @property
    def embedding_size(self) -> int:
        """Side of the embedding grid (64 for the official models)."""
        return self.prompt_encoder.image_embedding_size[0]

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def weights_id(self) -> str:
        """A string that changes whenever the weights do: part of an embedding's identity."""
        if self.checkpoint_sha256:
            return f"{self.model_name}:sha256:{self.checkpoint_sha256}"
        # Random or in-memory weights: unique to this module instance.
        return f"{self.model_name}:unsaved:{id(self):x}"

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) float image in 0-255 -> normalised encoder input."""
        return (image - self.pixel_mean) / self.pixel_std
