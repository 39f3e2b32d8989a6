"""Checking the prompts given to :meth:`SamPredictor.predict`: every bad one gets a message saying what to give.

Points are (x, y) pixels of the original image with labels 1 (object), 0
(background) or -1 (ignore); a box is (x0, y0, x1, y1) with pixel edges
(x1 = last column + 1, as in :mod:`napari_sam.geometry`); a mask prompt is
low-resolution *logits*, the third output of an earlier predict, never a
binary mask (see :func:`napari_sam.prompts.mask_to_logits`).
"""

import numpy as np
import torch


def _as_numbers(value, name: str, shape_hint: str) -> np.ndarray:
    """``value`` (array-like or torch tensor of any float dtype or device) as float64; no complex numbers."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise TypeError(f"{name} is complex ({value.dtype}); give real numbers")
        value = value.detach().to("cpu", torch.float64).numpy() if value.is_floating_point() else value.detach().cpu().numpy()
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers shaped {shape_hint}, got {value!r}") from None
    if raw.dtype.kind == "c":
        raise TypeError(f"{name} is complex ({raw.dtype}); give real numbers")
    try:
        return raw.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers shaped {shape_hint}, got {value!r}") from None


def _finite_array(value, name: str, shape_hint: str) -> np.ndarray:
    arr = _as_numbers(value, name, shape_hint)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values: {arr.tolist()}")
    return arr


def check_points(point_coords, point_labels, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    if point_coords is None:
        raise ValueError("point_labels were given without point_coords")
    if point_labels is None:
        raise ValueError("point_coords were given without point_labels (1 = object, 0 = background)")
    coords = _finite_array(point_coords, "point_coords", "(N, 2) as (x, y)")
    if coords.ndim == 1 and coords.shape == (2,):
        coords = coords[None]
    if coords.ndim != 2 or coords.shape[1] != 2 or coords.shape[0] == 0:
        raise ValueError(f"point_coords must have shape (N, 2) as (x, y) with N >= 1, got {coords.shape}")
    labels = _finite_array(point_labels, "point_labels", "(N,)").reshape(-1)
    if labels.shape[0] != coords.shape[0]:
        raise ValueError(f"{coords.shape[0]} point(s) but {labels.shape[0]} label(s): give one label per point")
    if not np.all(np.isin(labels, (-1, 0, 1))):
        raise ValueError(f"point_labels must be 1 (object), 0 (background) or -1 (ignore), got {labels.tolist()}")
    H, W = image_hw
    outside = (coords[:, 0] < 0) | (coords[:, 0] > W) | (coords[:, 1] < 0) | (coords[:, 1] > H)
    if outside.any():
        bad = coords[outside][0].tolist()
        raise ValueError(f"point (x, y) = {bad} lies outside the {W}x{H} (width x height) image")
    return coords, labels.astype(np.int64)


def check_box(box, image_hw: tuple[int, int]) -> np.ndarray:
    """A box (x0, y0, x1, y1) in pixels; corners are sorted and clipped to the image."""
    arr = _finite_array(box, "box", "(4,) as x0, y0, x1, y1")
    if arr.size != 4:
        raise ValueError(f"box must have 4 numbers (x0, y0, x1, y1), got {arr.size}: {arr.tolist()}")
    x0, y0, x1, y1 = arr.reshape(4)
    H, W = image_hw
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    if x1 < 0 or y1 < 0 or x0 > W or y0 > H:
        raise ValueError(f"box {arr.reshape(4).tolist()} lies entirely outside the {W}x{H} (width x height) image")
    clipped = np.array([max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)], dtype=np.float64)
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        # SAM would still answer, from two identical corners: a guess, not what was drawn.
        raise ValueError(
            f"box {arr.reshape(4).tolist()} has no area inside the {W}x{H} (width x height) image "
            f"({clipped[2] - clipped[0]:g} wide, {clipped[3] - clipped[1]:g} high); drag a box over the object "
            "(x1 = last column + 1), or click a point instead"
        )
    return clipped


def check_mask_input(mask_input, expected_hw: tuple[int, int]) -> np.ndarray:
    kind = mask_input.dtype if isinstance(mask_input, torch.Tensor) else np.asarray(mask_input).dtype
    integral = kind in (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64) or (
        isinstance(kind, np.dtype) and kind.kind in "biu"
    )
    if integral:
        raise TypeError(
            f"mask_input must be low-res logits (floats: the third output of an earlier predict), got {kind} "
            "values: a binary mask read as logits 0/1 or 0/255 is not the object you mean. Turn a mask into a "
            "prompt with napari_sam.prompts.mask_to_logits(mask, input_size, image_size, low_res_size)"
        )
    arr = _finite_array(mask_input, "mask_input", f"(1, {expected_hw[0]}, {expected_hw[1]})")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape != (1, *expected_hw):
        raise ValueError(
            f"mask_input must be low-res logits of shape (1, {expected_hw[0]}, {expected_hw[1]}) "
            f"(the third output of an earlier predict), got {arr.shape}"
        )
    return arr


def check_flag(value, name: str) -> bool:
    """A real bool: "no", 0 or an array would otherwise count as True or False by accident."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)
