"""Where the model is prompted: the regular point grid and the crop boxes, as Segment Anything lays them out.

Points are fractions of the crop's width and height in [0, 1], one per cell
centre of an ``n x n`` grid, row by row (x varies fastest). Crop layer ``i``
splits the image into ``2**i x 2**i`` overlapping crops; layer 0 is the
whole image. Boxes are ``[x0, y0, x1, y1]`` integer pixel edges.
"""

from __future__ import annotations

import math

import numpy as np


def point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) cell centres of an n x n grid over [0, 1]^2, as (x, y)."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One grid per crop layer; layer i has ``int(n / downscale**i)`` points per side."""
    return [point_grid(int(n_per_side / downscale**i)) for i in range(n_layers + 1)]


def crop_boxes(image_hw: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """The crop boxes of every layer and the layer each belongs to (the whole image first)."""
    H, W = image_hw
    boxes, layers = [[0, 0, W, H]], [0]
    short_side = min(H, W)
    for layer in range(n_layers):
        n = 2 ** (layer + 1)
        # Neighbouring crops share this many pixels; deeper layers share proportionally less.
        overlap = int(overlap_ratio * short_side * (2 / n))
        crop_w = int(math.ceil((overlap * (n - 1) + W) / n))
        crop_h = int(math.ceil((overlap * (n - 1) + H) / n))
        x0s = [int((crop_w - overlap) * i) for i in range(n)]
        y0s = [int((crop_h - overlap) * i) for i in range(n)]
        for x0 in x0s:  # x outer, y inner: the reference's order
            for y0 in y0s:
                boxes.append([x0, y0, min(x0 + crop_w, W), min(y0 + crop_h, H)])
                layers.append(layer + 1)
    return boxes, layers
