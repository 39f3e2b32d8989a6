"""Removing an image layer together with the SAM layers made for it, without napari's per-layer pause.

napari runs a full garbage collection for every layer removed (about 0.3 s
each once napari is loaded), so taking away an image and its six SAM layers
made the series dock's Next take seconds. The objects alive before the
removal are frozen out of those collections (``gc.freeze``); one collection
afterwards frees what the removed layers held, as napari intends.
"""

from __future__ import annotations

import gc

from . import layers as L


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
