"""The SAM engine: torch + numpy only, no napari or Qt.

Where an image becomes an embedding: :meth:`SamPredictor.set_image`
(preprocessing in :mod:`.image`, the encoders in :mod:`.image_encoder` and
:mod:`.tiny_vit`). Where a click becomes a mask: :meth:`SamPredictor.predict`
(:mod:`.prompt_encoder`, :mod:`.mask_decoder`).
"""

from .build import PRESETS, SamConfig, build_sam, config_from_state_dict
from .checkpoint import CheckpointError
from .embedding import ImageEmbedding
from .predictor import SamPredictor
from .zoo import MODELS, DownloadError, list_models, load_model

__all__ = [
    "PRESETS",
    "MODELS",
    "CheckpointError",
    "DownloadError",
    "ImageEmbedding",
    "SamConfig",
    "SamPredictor",
    "build_sam",
    "config_from_state_dict",
    "list_models",
    "load_model",
]
