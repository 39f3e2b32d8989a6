"""The series dock's layers: a user's own "SAM labels" kept aside, an image removed with its SAM layers.

A "SAM labels" layer the user made before opening a series belongs to no
image; the annotator would adopt it for the series image and the series would
fill it with that image's saved labels. When it holds objects it is renamed
instead (``SAM labels (kept)``), so those objects stay as they are.

Removing: napari runs a full garbage collection for every layer removed (about 0.3 s
each once napari is loaded), so taking away an image and its six SAM layers
made the series dock's Next take seconds. The objects alive before the
removal are frozen out of those collections (``gc.freeze``); one collection
afterwards frees what the removed layers held, as napari intends.
"""

from __future__ import annotations

import gc

import numpy as np

from . import layers as L


KEPT_SUFFIX = " (kept)"


def keep_users_labels(viewer) -> list[str]:
    """Rename untagged "SAM labels" layers holding objects, so no series image adopts them; their new names."""
    kept = []
    for layer in viewer.layers:
        if layer.name == L.LABELS_NAME and not L.is_ours(layer) and np.any(np.asarray(layer.data)):
            layer.name = L.LABELS_NAME + KEPT_SUFFIX
            kept.append(layer.name)
    return kept


def layers_made_for(viewer, image) -> list:
    """The SAM layers (points, boxes, candidates, labels, proposals) tagged for ``image``."""
    return [lyr for lyr in viewer.layers if L.is_ours(lyr) and L._role(lyr).get("image") == image.name]


def remove_with_its_layers(viewer, image) -> None:
    """Remove ``image`` and :func:`layers_made_for` it from ``viewer``."""
    doomed = [image, *layers_made_for(viewer, image)]
    gc.freeze()
    try:
        for layer in doomed:
            if layer in viewer.layers:
                viewer.layers.remove(layer)
    finally:
        gc.unfreeze()
    gc.collect()
