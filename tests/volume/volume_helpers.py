"""Test helpers for the volume tests: tiny models that look loaded from a file, counting predictors."""

import torch

from napari_sam.model import SamPredictor
from napari_sam.model.build import build_sam, tiny_config


def tiny_model(seed: int = 0, name: str = "tiny"):
    """A tiny random SAM that looks like one loaded from a checkpoint (has a weights hash)."""
    torch.manual_seed(seed)
    model = build_sam(tiny_config()).eval()
    model.model_name = name
    model.checkpoint_sha256 = f"{seed:064x}"
    return model


class CountingPredictor(SamPredictor):
    """A SamPredictor that counts image-encoder runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoder_runs = 0

    def set_image(self, image, intensity_range=None):
        self.encoder_runs += 1
        return super().set_image(image, intensity_range=intensity_range)
