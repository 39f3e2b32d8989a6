"""Simulated user prompts, as in the Segment Anything paper's interactive training.

A user first clicks inside an object or draws a box around it; then, looking
at the result, clicks where the mask is wrong: a positive click on a part it
missed, a negative click on a part it wrongly took. All coordinates are
(x, y) pixel indices of the padded model input; boxes are pixel-edge
boxes of :mod:`napari_sam.geometry`.
"""

import numpy as np

from ..geometry import mask_box

# Box corners are moved by Gaussian noise of 10 % of the box side, at most 20 px (SAM paper).
BOX_NOISE = 0.1
BOX_MAX_NOISE = 20.0


def _check_mask(mask, name="mask") -> np.ndarray:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2D boolean mask, got shape {arr.shape}")
    return arr.astype(bool, copy=False)


def random_point_inside(mask, rng: np.random.Generator) -> np.ndarray:
    """(x, y) of a pixel drawn uniformly from the object."""
    ys, xs = np.nonzero(_check_mask(mask))
    if len(ys) == 0:
        raise ValueError("cannot place a point inside an empty mask")
    i = int(rng.integers(len(ys)))
    return np.array([xs[i], ys[i]], dtype=np.float32)


def jittered_box(mask, rng: np.random.Generator, noise: float = BOX_NOISE, max_noise: float = BOX_MAX_NOISE) -> np.ndarray:
    """The object's bounding box with each corner coordinate moved as a hurried user would draw it.

    The shift of each coordinate is Gaussian with a standard deviation of
    ``noise`` times the box side along that axis, cut at ``max_noise`` pixels;
    the box then stays inside the image.
    """
    if noise < 0 or max_noise < 0:
        raise ValueError(f"noise and max_noise must be >= 0, got {noise} and {max_noise}")
    m = _check_mask(mask)
    box = mask_box(m).astype(np.float32)
    side = np.array([box[2] - box[0], box[3] - box[1]] * 2, dtype=np.float32)
    shift = np.clip(rng.normal(0.0, 1.0, 4) * noise * side, -max_noise, max_noise)
    box = box + shift.astype(np.float32)
    h, w = m.shape
    box[[0, 2]] = np.clip(box[[0, 2]], 0, w)
    box[[1, 3]] = np.clip(box[[1, 3]], 0, h)
    # A large shift can swap corners of a thin object; keep (x0, y0) top-left.
    return np.array([min(box[0], box[2]), min(box[1], box[3]), max(box[0], box[2]), max(box[1], box[3])], np.float32)


def error_point(predicted, target, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A corrective click drawn uniformly from where ``predicted`` and ``target`` disagree.

    Returns ((x, y), label): label 1 on a missed object pixel (false negative),
    0 on a wrongly included pixel (false positive). With no error left the
    user would confirm the object: a positive point inside it.
    """
    pred, true = _check_mask(predicted, "predicted"), _check_mask(target, "target")
    if pred.shape != true.shape:
        raise ValueError(f"predicted {pred.shape} and target {true.shape} masks differ in shape")
    wrong = pred != true
    ys, xs = np.nonzero(wrong)
    if len(ys) == 0:
        return random_point_inside(true, rng), 1
    i = int(rng.integers(len(ys)))
    label = 1 if true[ys[i], xs[i]] else 0
    return np.array([xs[i], ys[i]], dtype=np.float32), label
