"""Where a click becomes a prompt: reading "SAM points" and "SAM boxes" for one slice.

A prompt belongs to the slice it was placed on: a point at (z, y, x) is on
slice z. Coordinates in napari are (row, column); SAM's are (x, y), so they
are swapped here, once. Points outside the plane are ignored (napari lets the
user click beside the image); of several boxes on a slice the last one drawn
counts, and a rectangle without area (a click of the rectangle tool) is no
box. The sign of a point (object or background) is the Points feature
``sign``, shown as its colour.
"""

from __future__ import annotations

import numpy as np

from ..prompts import NEGATIVE, POSITIVE, Prompt
from . import layers as L


def on_slice(coords: np.ndarray, slice_index) -> np.ndarray:
    """Which rows of ``coords`` (napari data coordinates) lie on ``slice_index``."""
    if len(coords) == 0 or not slice_index:
        return np.ones(len(coords), bool)
    lead = np.round(coords[:, : len(slice_index)]).astype(int)
    return np.all(lead == np.asarray(slice_index), axis=1)


def read_prompt(points, boxes, slice_index, plane_shape) -> Prompt:
    """The points and the last box placed on ``slice_index``, in (x, y) pixels of the plane."""
    H, W = plane_shape
    xy, labels, box = np.zeros((0, 2)), np.zeros(0, dtype=np.int64), None
    if points is not None and len(points.data):
        data = np.asarray(points.data)
        here = on_slice(data, slice_index)
        xy = data[here][:, [-1, -2]]
        signs = np.asarray(points.features[L.SIGN].astype(object))[here]
        inside = (xy[:, 0] >= 0) & (xy[:, 0] <= W) & (xy[:, 1] >= 0) & (xy[:, 1] <= H)
        xy = xy[inside]
        labels = np.where(signs[inside] == "negative", NEGATIVE, POSITIVE).astype(np.int64)
    if boxes is not None and len(boxes.data):
        for shape, kind in zip(reversed(boxes.data), reversed(list(boxes.shape_type))):
            shape = np.asarray(shape)
            if kind != "rectangle" or not on_slice(shape[:1], slice_index).all():
                continue
            ys, xs = shape[:, -2], shape[:, -1]
            x0, y0, x1, y1 = max(xs.min(), 0), max(ys.min(), 0), min(xs.max(), W), min(ys.max(), H)
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue  # beside the image, or a click of the rectangle tool without a drag: no box
            box = [xs.min(), ys.min(), xs.max(), ys.max()]
            break
    return Prompt.make(xy, labels, box)


def set_signs(points, indices, sign) -> None:
    """Set the sign ("positive"/"negative", or a function of the index) of some points."""
    features = points.features.copy()
    col = features[L.SIGN].astype(object)
    for i in indices:
        col.iloc[int(i)] = sign(int(i)) if callable(sign) else sign
    features[L.SIGN] = col
    points.features = features
    points.refresh_colors()


def flip_selected(points) -> bool:
    """Key T in select mode: flip the sign of the selected points; False when none is selected."""
    if str(points.mode) != "select" or not points.selected_data:
        return False
    col = points.features[L.SIGN].astype(object)
    set_signs(points, points.selected_data, lambda i: "negative" if col.iloc[i] == "positive" else "positive")
    return True


def remove_on_slice(points, boxes, slice_index) -> None:
    """Delete the points and boxes of one slice (the labels are not touched)."""
    if points is not None and len(points.data):
        here = on_slice(np.asarray(points.data), slice_index)
        if here.any():
            points.selected_data = set(np.flatnonzero(here).tolist())
            points.remove_selected()
    if boxes is not None and len(boxes.data):
        doomed = [i for i, shp in enumerate(boxes.data) if on_slice(np.asarray(shp)[:1], slice_index).all()]
        if doomed:
            boxes.selected_data = set(doomed)
            boxes.remove_selected()


def shift_held(event) -> bool:
    """Was Shift held for this napari mouse event (napari versions name modifiers differently)."""
    modifiers = getattr(event, "modifiers", ())
    return any(str(m) == "Shift" or getattr(m, "name", None) == "Shift" for m in modifiers)
