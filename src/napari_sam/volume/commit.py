"""Turning a propagated 3D object into one edit of a label volume, without touching other labels.

The annotator writes the result of a propagation into the output Labels
layer as one undoable edit (napari's ``Labels.data_setitem(indices, value)``
records undo history). :func:`object_paint_indices` says which voxels that
edit sets: those of the object that are background or already carry the
object's own label — never a voxel of another object the user made, unless
``overwrite=True``. :func:`to_image_indices` maps the coordinates of the 3D
stack back into a larger image (the t of a (t, z, y, x) image) using the
index returned by :func:`napari_sam.volume.stack_through`.
"""

from __future__ import annotations

import numpy as np

from ..commit import paintable, to_image_indices  # noqa: F401 (to_image_indices: napari_sam.volume's name)


def object_paint_indices(labels, mask, label: int, overwrite: bool = False) -> tuple[np.ndarray, ...]:
    """Coordinate arrays of the voxels of ``mask`` to set to ``label`` in ``labels`` (same shape).

    Voxels holding another non-zero label are left out unless ``overwrite``.
    """
    labels = np.asarray(labels)
    mask = np.asarray(mask)
    if mask.shape != labels.shape:
        raise ValueError(f"the object's mask has shape {mask.shape}, the labels {labels.shape}; they must match")
    if mask.dtype != bool:
        raise TypeError(f"the object's mask must be boolean, got {mask.dtype}")
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label <= 0:
        raise ValueError(f"label must be a positive integer (0 is background), got {label!r}")
    if labels.dtype.kind in "ui" and label > np.iinfo(labels.dtype).max:
        raise ValueError(f"label {label} does not fit the labels' dtype {labels.dtype}")
    return np.nonzero(paintable(labels, mask, int(label), overwrite))
