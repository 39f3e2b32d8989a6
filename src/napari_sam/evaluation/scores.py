"""A model's quality on labelled images: the simulated annotator's clicks and the automatic mSA.

Per image, as the annotator would work: embed once, decode the automatic
mask generator's point grid once, pick the automatic settings (tuned on these
images, see :mod:`.tuning`, or given), take the proposals as a label image,
then click every true object (:mod:`.annotator`). The scores:

* ``one_click_iou``: mean IoU after the first click, over all objects;
* ``noc90``: mean clicks per object to IoU 0.9 (0 for an accepted proposal,
  20 when never reached);
* ``accepted_share``: share of objects done by accepting a proposal;
* ``msa``: mean over images of the automatic label image's mean segmentation
  accuracy (:func:`napari_sam.auto.metrics.mean_segmentation_accuracy`);
* ``objects``: how many true objects were scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..auto.generator import AutomaticMaskGenerator, DecodedGrid
from ..auto.labels import masks_to_labels
from ..auto.metrics import mean_segmentation_accuracy
from .annotator import MAX_CLICKS, ObjectResult, annotate_image
from .tuning import tune_auto_settings

SCORE_NAMES = ("one_click_iou", "noc90", "accepted_share", "msa", "objects")


@dataclass
class ImageResult:
    truth: np.ndarray
    proposals: np.ndarray  # the automatic label image
    objects: list[ObjectResult]
    msa: float


def check_examples(examples) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, labels) pairs with at least one object, or a ValueError saying which is wrong."""
    out = []
    for k, pair in enumerate(examples):
        if len(pair) != 2:
            raise ValueError(f"example {k} must be an (image, labels) pair")
        image, truth = np.asarray(pair[0]), np.asarray(pair[1])
        if truth.shape != image.shape[:2]:
            raise ValueError(f"example {k}: labels of shape {truth.shape} do not match the image's {image.shape[:2]}")
        if not truth.any():
            raise ValueError(f"example {k} has no labelled object: nothing to evaluate on it")
        out.append((image, truth))
    if not out:
        raise ValueError("no labelled images to evaluate on")
    return out


def decode_examples(generator: AutomaticMaskGenerator, examples) -> list[tuple[object, DecodedGrid]]:
    """Each image's embedding and decoded grid (kept below every threshold, so any setting re-filters it)."""
    decoded = []
    for image, _ in examples:
        embedding = generator.embed(image)
        decoded.append((embedding, generator.decode_grid(embedding=embedding, refilter=True)))
    return decoded


def evaluate(model, examples, auto_settings: dict | None = None, *, tune: bool = True,
             max_clicks: int = MAX_CLICKS) -> tuple[dict, dict, list[ImageResult]]:
    """(scores, automatic settings used, per-image results) of ``model`` on (image, labels) ``examples``.

    ``auto_settings`` start the generator (the model's recommended ones); with
    ``tune`` its thresholds are then tuned on these very images.
    """
    examples = check_examples(examples)
    base = dict(auto_settings or {})
    generator = AutomaticMaskGenerator(model, **base)
    # 1. The slow part, once per image: the embedding and the decoded point grid.
    decoded = decode_examples(generator, examples)
    # 2. The thresholds, chosen among re-filterings of those grids.
    settings = tune_auto_settings(generator, [d for _, d in decoded], [t for _, t in examples], base) if tune else base
    results = []
    for (image, truth), (embedding, grid) in zip(examples, decoded):
        # 3. The proposals the annotator is shown, as one label image.
        records = generator.filter(grid, **_filter_part(settings))
        proposals, _ = masks_to_labels(records, truth.shape)
        # 4. Accept what matches, click the rest.
        generator.predictor.set_embedding(embedding)
        objects = annotate_image(generator.predictor, truth, proposals, max_clicks)
        generator.predictor.reset_image()
        results.append(ImageResult(truth, proposals, objects, mean_segmentation_accuracy(truth, proposals)))
    return summarise(results, max_clicks), settings, results


def summarise(results: list[ImageResult], max_clicks: int = MAX_CLICKS) -> dict:
    objects = [o for r in results for o in r.objects]
    if not objects:
        raise ValueError("no objects were scored")
    return {
        "one_click_iou": float(np.mean([o.ious[0] for o in objects])),
        "noc90": float(np.mean([o.noc(max_clicks) for o in objects])),
        "accepted_share": float(np.mean([o.accepted for o in objects])),
        "msa": float(np.mean([r.msa for r in results])),
        "objects": len(objects),
    }


def _filter_part(settings: dict) -> dict:
    from ..auto.settings import FILTER_SETTINGS

    return {k: v for k, v in settings.items() if k in FILTER_SETTINGS}
