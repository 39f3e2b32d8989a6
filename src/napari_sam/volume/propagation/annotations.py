"""The slices the user segmented: checked, and taken out of a label volume."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def check_annotations(annotations, n_slices) -> dict[int, np.ndarray]:
    """{slice: bool mask} of the non-empty annotations, refusing slices outside the stack or masks of mixed shape."""
    if not isinstance(annotations, Mapping):
        raise TypeError(
            f"annotations must map slice index -> 2D mask, got {type(annotations).__name__}; "
            "use annotations_from_labels() for a label volume"
        )
    anns, shape = {}, None
    for z, m in annotations.items():
        if isinstance(z, bool) or not isinstance(z, (int, np.integer)):
            raise TypeError(f"annotation slice index must be an integer, got {z!r}")
        if not 0 <= z < n_slices:
            raise ValueError(f"annotated slice {z} does not exist: the stack has {n_slices} slices")
        m = np.asarray(m)
        if m.ndim != 2:
            raise ValueError(f"the annotation on slice {z} must be a 2D mask, got shape {m.shape}")
        if shape is not None and m.shape != shape:
            raise ValueError(f"annotation masks differ in shape: {shape} and {m.shape} (slice {z})")
        shape = m.shape
        m = m.astype(bool)
        if m.any():
            anns[int(z)] = m
    if not anns:
        raise ValueError(
            "no object to propagate: segment or paint the object on at least one slice first"
        )
    return anns


def annotations_from_labels(labels, label: int, slices: Iterable[int] | None = None) -> dict[int, np.ndarray]:
    """{slice: mask} of ``label`` in a (Z, H, W) label volume, on ``slices`` (default: every slice holding it)."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"expected a (slices, rows, columns) label volume, got shape {labels.shape}")
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label == 0:
        raise ValueError(f"label must be a non-zero integer (0 is background), got {label!r}")
    if slices is None:
        slices = np.flatnonzero((labels == label).any(axis=(1, 2)))
    anns = {int(z): labels[int(z)] == label for z in slices}
    if not any(m.any() for m in anns.values()):
        raise ValueError(f"label {label} is not on any of the given slices: nothing to propagate")
    return anns
