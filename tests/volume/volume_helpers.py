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


class OracleSegmenter:
    """Answers each prompt with the true object under it, from a label volume.

    The object is the label under the first positive point; where that is
    background, the label covering most of the box; else nothing. Records
    the slices it was asked about.
    """

    def __init__(self, labels):
        import numpy as np

        self.labels = np.asarray(labels)
        self.calls: list[int] = []

    def __len__(self):
        return self.labels.shape[0]

    def segment(self, index, prompt):
        import numpy as np

        from napari_sam.volume.propagate import SliceSegmentation

        self.calls.append(index)
        plane = self.labels[index]
        label = 0
        if prompt.points is not None:
            for (x, y), positive in zip(prompt.points, prompt.point_labels):
                if positive == 1:
                    label = plane[int(y), int(x)]
                    if label:
                        break
        if not label and prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            region = plane[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))]
            values = region[region > 0]
            if values.size:
                label = np.bincount(values).argmax()
        mask = plane == label if label else np.zeros(plane.shape, bool)
        return SliceSegmentation(mask, None, 1.0)
