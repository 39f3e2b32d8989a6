"""A batch of grid points none of whose candidates pass the floors must give no masks, not an error.

The window path (an image at the model's input size, here the demo model's
256 x 256) once failed on such a batch: the list of its windows was empty,
so the "small enough for a window" flags came out as floats.
"""

import numpy as np

from napari_sam.auto import AutomaticMaskGenerator
from napari_sam.auto import windows
from napari_sam.model import SamPredictor, load_model
from napari_sam.synthetic import make_nuclei_2d


def test_a_batch_with_nothing_over_the_floor_gives_no_masks():
    predictor = SamPredictor(load_model("demo"), precision="fp32")
    image = make_nuclei_2d((256, 256), seed=11)[0]
    assert predictor.model.image_size == 256  # the window path applies to this image
    strict = AutomaticMaskGenerator(predictor, points_per_side=6, points_per_batch=9, pred_iou_thresh=0.999)
    assert strict.generate(image) == []
    # The same image and grid with a floor that lets masks through finds nuclei (the test can fail).
    found = AutomaticMaskGenerator(predictor, points_per_side=6, points_per_batch=9, pred_iou_thresh=0.5,
                                   stability_score_thresh=0.5).generate(image)
    assert found and all(m["segmentation"].shape == (256, 256) for m in found)


def test_windows_of_no_masks_is_empty():
    import torch

    assert windows.windows_of(torch.zeros((0, 64, 64)), 256, (256, 256), -1.0) == []
