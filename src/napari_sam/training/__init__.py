"""Training and fine-tuning SAM on microscopy images (headless: no napari, no Qt).

Entry point for people: ``napari-sam-annotator train`` (see :mod:`napari_sam.cli`);
for code: :func:`train` with :class:`TrainOptions`.
"""

from .config import DEMO_CONFIG, TRAINING_PRESETS, training_config
from .loop import TrainingInterrupted, TrainOptions, TrainResult, train

__all__ = ["DEMO_CONFIG", "TRAINING_PRESETS", "TrainOptions", "TrainResult", "TrainingInterrupted", "train", "training_config"]
