"""Clicks on a plane larger than the model's input: each prompt is decoded on the tile that suits it.

Usage::

    predictor = TiledPredictor(load_model("vit_b"))
    predictor.set_image(zarr_array)                     # nothing is embedded yet
    found = predictor.predict(point_coords=[[5230, 8110]], point_labels=[1])
    found.mask, found.offset                            # a bounding-box crop and where it lies (row, column)

The steps of :meth:`TiledPredictor.predict`:

1. Pick the tile that holds the whole prompt with the most margin to its
   inner borders (a border on the image's edge is no border: nothing lies
   beyond it).
2. Embed that tile only (through the embedding source: a tile embedded
   before, by a click or by automatic segmentation, is read back) and decode.
3. A mask that reaches an inner border of its window was cut by the window:
   decode it again on a window centred on the mask and the prompt, large
   enough to hold both with a halo. A mask larger than a tile gets a larger
   window, which SAM's encoder sees at a lower resolution. This is repeated a
   few times; ``TiledMask.cut`` says when the mask still reaches a border.

Coordinates are the whole plane's: points (x, y), boxes (x0, y0, x1, y1)
pixel edges, as :class:`~napari_sam.model.SamPredictor` takes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..embeddings import EmbeddingSource
from .embeddings import TileEmbeddings
from .layout import Tiling, choose_tile_and_halo, plan_tiles, window_around
from .reading import check_plane_array, plane_intensity_range

#: How often a mask cut by its window is decoded again on a window moved onto it.
MAX_MOVES = 3


@dataclass
class TiledMask:
    """One mask of a tiled plane, kept small: the crop of its bounding box and where that lies."""

    mask: np.ndarray  # bool (rows, columns) of the bounding box
    offset: tuple[int, int]  # (row, column) of mask[0, 0] in the plane
    score: float  # the model's predicted IoU
    window: tuple[int, int, int, int]  # (y0, y1, x0, x1) of the window it was decoded on
    cut: bool = False  # still reaches an inner border of its window after the moves
    windows: list = field(default_factory=list)  # every window decoded, in order

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) pixel edges in the plane (napari_sam.geometry's convention)."""
        (y, x), (h, w) = self.offset, self.mask.shape
        return x, y, x + w, y + h

    def paste(self, plane: np.ndarray, value=True) -> np.ndarray:
        """Write the mask into ``plane`` (anything of the plane's shape sliceable like numpy) and return it."""
        (y, x), (h, w) = self.offset, self.mask.shape
        region = np.asarray(plane[y:y + h, x:x + w]).copy()
        region[self.mask] = value
        plane[y:y + h, x:x + w] = region
        return plane


@dataclass
class TiledCandidates:
    """SAM's candidates for one prompt on a tiled plane: crops on one box that holds them all."""

    masks: np.ndarray  # bool (K, rows, columns) of the box
    offset: tuple[int, int]  # (row, column) of masks[:, 0, 0] in the plane
    iou: np.ndarray  # (K,) the model's predicted IoU
    low_res: np.ndarray  # (K, h, w) low-resolution logits, of the window
    window: tuple[int, int, int, int]  # (y0, y1, x0, x1) of the window they were decoded on
    cut: bool = False  # the best one still reaches an inner border of its window
    windows: list = field(default_factory=list)  # every window decoded, in order


class TiledPredictor:
    """:class:`~napari_sam.model.SamPredictor`'s prompts on a large plane, embedding only the tiles they need."""

    def __init__(self, model_or_predictor, *, tile: int | None = None, halo: int | None = None,
                 object_diameter: float | None = None, source: EmbeddingSource | None = None,
                 precision: str = "auto") -> None:
        from ..model.predictor import SamPredictor

        if isinstance(model_or_predictor, SamPredictor):
            self.predictor = model_or_predictor.twin()  # the caller's predictor keeps its own image
        else:
            self.predictor = SamPredictor(model_or_predictor, precision=precision)
        self.tile, self.halo = choose_tile_and_halo(self.predictor.model.image_size, object_diameter,
                                                    tile=tile, halo=halo)
        self.source = source if source is not None else EmbeddingSource()
        self.model_id = self.predictor.model.weights_id
        self.precision = self.predictor.embedding_precision
        self.tiling: Tiling | None = None
        self._tiles: TileEmbeddings | None = None

    # ------------------------------------------------------------ the encoder interface of the embedding source
    def embed(self, plane, intensity_range=None):
        return self.predictor.set_image(plane, intensity_range=intensity_range)

    # ------------------------------------------------------------ the image
    def set_image(self, array, intensity_range=None, *, slice_index=()) -> Tiling:
        """Take ``array`` (read lazily) as the current plane; embeds nothing.

        ``intensity_range`` (low, high) scales every tile alike; None: the
        plane's own, sampled band by band (one pass over the image; pass a
        range to skip it).
        """
        array = check_plane_array(array)
        tiling = plan_tiles(tuple(array.shape[:2]), self.tile, self.halo)  # a line of pixels fails here, unread
        if intensity_range is None:
            intensity_range = plane_intensity_range(array)
        self.tiling = tiling
        self._tiles = TileEmbeddings(array, self, source=self.source, intensity_range=intensity_range,
                                     slice_index=slice_index)
        return self.tiling

    @property
    def tile_embeddings(self) -> TileEmbeddings:
        if self._tiles is None:
            raise ValueError("no image is set: call set_image(array) before predict")
        return self._tiles

    # ------------------------------------------------------------ prompts
    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output: bool = False,
                max_moves: int = MAX_MOVES) -> TiledMask:
        """The best mask for one prompt, whole even where it crosses tile borders (see the module's steps)."""
        tiles = self.tile_embeddings
        points, labels, box = _check_prompt(point_coords, point_labels, box, self.tiling.plane_shape)
        mask, score, window, cut, tried = self._search(
            points, box, lambda w: self._decode(tiles, w, points, labels, box, multimask_output), max_moves)
        return _cropped(mask, window, score, cut, tried)

    def predict_candidates(self, point_coords=None, point_labels=None, box=None,
                           max_moves: int = MAX_MOVES) -> TiledCandidates:
        """SAM's three candidates for one prompt, as the annotator shows them, on one window.

        The window is found as :meth:`predict` finds it, following the best
        candidate (highest predicted IoU) until it is whole; the three
        candidates are those of that last window, cropped to one box that
        holds all three.
        """
        tiles = self.tile_embeddings
        points, labels, box = _check_prompt(point_coords, point_labels, box, self.tiling.plane_shape)
        decoded = {}

        def best(window):
            masks, iou, low_res = decoded[window] = self._decode_three(tiles, window, points, labels, box)
            k = int(np.argmax(iou))
            return masks[k], float(iou[k])

        _, _, window, cut, tried = self._search(points, box, best, max_moves)
        return _cropped_three(*decoded[window], window, cut, tried)

    def _search(self, points, box, decode, max_moves):
        """(best mask, its score, the window it was decoded on, still cut?, windows tried): steps 1 to 3."""
        shape = self.tiling.plane_shape
        extent = _prompt_extent(points, box)  # (y0, y1, x0, x1), plane coordinates
        # 1. The tile holding the prompt with the most margin.
        window = self._best_tile(extent)
        tried = []
        while True:
            # 2. Embed this window only, and decode.
            tried.append(window)
            mask, score = decode(window)
            touching = _touches_inner_border(mask, window, shape)
            if not touching or len(tried) > max_moves or not mask.any():
                break
            # 3. Cut by the window: centre a window on the mask and the prompt.
            nxt = self._window_on(mask, window, extent)
            if nxt in tried:
                break
            window = nxt
        return mask, score, window, bool(touching and mask.any()), tried

    def _best_tile(self, extent) -> tuple[int, int, int, int]:
        best, best_margin = None, -np.inf
        shape = self.tiling.plane_shape
        for t in self.tiling:
            y0, y1, x0, x1 = t.box
            if not (y0 <= extent[0] and extent[1] <= y1 and x0 <= extent[2] and extent[3] <= x1):
                continue
            inner = t.inner_edges(shape)
            gaps = (extent[0] - y0, y1 - extent[1], extent[2] - x0, x1 - extent[3])
            margin = min([g for g, i in zip(gaps, inner) if i], default=np.inf)
            if margin > best_margin:
                best, best_margin = t.box, margin
        if best is not None:
            return best
        # A prompt wider than a tile (a large box): a window around it with a halo.
        size = (extent[1] - extent[0] + 2 * self.halo, extent[3] - extent[2] + 2 * self.halo)
        return self._window(((extent[0] + extent[1]) / 2, (extent[2] + extent[3]) / 2), size)

    def _window_on(self, mask, window, extent) -> tuple[int, int, int, int]:
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        y0, x0 = window[0], window[2]
        top, bottom = min(y0 + rows[0], extent[0]), max(y0 + rows[-1] + 1, extent[1])
        left, right = min(x0 + cols[0], extent[2]), max(x0 + cols[-1] + 1, extent[3])
        # The mask may continue beyond the border it touched: a halo of room on every side (the
        # next move, if it is still cut, starts from the larger mask).
        size = (bottom - top + 2 * self.halo, right - left + 2 * self.halo)
        return self._window(((top + bottom) / 2, (left + right) / 2), size)

    def _window(self, centre, size) -> tuple[int, int, int, int]:
        shape = self.tiling.plane_shape
        size = (max(size[0], self.tile), max(size[1], self.tile))
        return window_around(shape, centre, size)

    def _decode(self, tiles, window, points, labels, box, multimask_output):
        masks, iou, _ = self._run_decoder(tiles, window, points, labels, box, multimask_output)
        best = int(np.argmax(iou))
        return masks[best], float(iou[best])

    def _decode_three(self, tiles, window, points, labels, box):
        """(masks [3, h, w] of the window, predicted IoU [3], low-res logits [3, ...])."""
        return self._run_decoder(tiles, window, points, labels, box, True)

    def _run_decoder(self, tiles, window, points, labels, box, multimask_output):
        y0, _, x0, _ = window
        shift = np.array([x0, y0], dtype=np.float64)
        emb = tiles.get(window)
        self.predictor.set_embedding(emb)
        try:
            return self.predictor.predict(
                point_coords=None if points is None else points - shift, point_labels=labels,
                box=None if box is None else box - np.tile(shift, 2), multimask_output=multimask_output)
        finally:
            self.predictor.reset_image()


def _check_prompt(point_coords, point_labels, box, shape):
    if point_coords is None and box is None:
        raise ValueError("give a prompt: point_coords with point_labels, or a box")
    points = labels = None
    if point_coords is not None:
        points = np.asarray(point_coords, dtype=np.float64).reshape(-1, 2)
        if point_labels is None:
            raise ValueError("point_coords need point_labels (1 = object, 0 = background), one per point")
        labels = np.asarray(point_labels).reshape(-1)
        if len(labels) != len(points):
            raise ValueError(f"{len(points)} points but {len(labels)} labels: give one label per point")
        h, w = shape
        outside = ~((points[:, 0] >= 0) & (points[:, 0] <= w) & (points[:, 1] >= 0) & (points[:, 1] <= h))
        if outside.any():
            raise ValueError(f"point {points[outside][0].tolist()} (x, y) lies outside the {h} x {w} plane")
    if box is not None:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        if box.size != 4 or not np.all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"box must be (x0, y0, x1, y1) with x0 < x1 and y0 < y1, got {box.tolist()}")
    return points, labels, box


def _prompt_extent(points, box) -> tuple[int, int, int, int]:
    xs, ys = [], []
    if points is not None:
        xs += list(points[:, 0])
        ys += list(points[:, 1])
    if box is not None:
        xs += [box[0], box[2]]
        ys += [box[1], box[3]]
    return int(np.floor(min(ys))), int(np.ceil(max(ys))), int(np.floor(min(xs))), int(np.ceil(max(xs)))


def _touches_inner_border(mask, window, shape) -> bool:
    y0, y1, x0, x1 = window
    edges = ((y0 > 0, mask[0]), (y1 < shape[0], mask[-1]), (x0 > 0, mask[:, 0]), (x1 < shape[1], mask[:, -1]))
    return any(inner and line.any() for inner, line in edges)


def _cropped(mask, window, score, cut, tried) -> TiledMask:
    if not mask.any():
        return TiledMask(np.zeros((0, 0), bool), (window[0], window[2]), score, window, False, tried)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].copy()
    return TiledMask(crop, (window[0] + int(rows[0]), window[2] + int(cols[0])), score, window, bool(cut), tried)


def _cropped_three(masks, iou, low_res, window, cut, tried) -> TiledCandidates:
    masks = np.asarray(masks, dtype=bool)
    union = masks.any(0)
    if not union.any():
        return TiledCandidates(np.zeros((len(masks), 0, 0), bool), (window[0], window[2]), np.asarray(iou),
                               np.asarray(low_res), window, False, tried)
    rows, cols = np.flatnonzero(union.any(1)), np.flatnonzero(union.any(0))
    crop = masks[:, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].copy()
    return TiledCandidates(crop, (window[0] + int(rows[0]), window[2] + int(cols[0])), np.asarray(iou, float),
                           np.asarray(low_res), window, bool(cut), tried)
