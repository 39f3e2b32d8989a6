"""Planes too large for one embedding, in the annotator: each click embeds only the tiles it needs.

A plane more than :data:`~napari_sam.batch.job.TILE_ABOVE` times the model's
input on its longest side (the rule ``segment`` uses) is never embedded
whole: shrunk to the encoder's input, its objects would lose more than half
their size. Instead a click or a box is decoded by
:class:`~napari_sam.tiles.TiledPredictor` on the tile that holds it (moved
onto the mask while the mask reaches the tile's inner border, so masks that
cross tile borders come out whole). Tile embeddings go through the
workspace's lookup chain: memory, then the on-disk store, then the encoder,
so a second click on a tile, or the same tile in a later session, runs no
encoder.

What the annotator gives up on such planes, and why: the interactive loop's
low-resolution logits belong to one window's embedding, and the next click
may be decoded on another window, so each click is decoded from the points
and the box alone (an edited object's box leads, not its mask).

The plane is read window by window (:func:`~napari_sam.tiles.reading.plane_of`),
its contrast band by band (:func:`~napari_sam.tiles.reading.plane_intensity_range`):
one range for the whole plane, so every tile of a slice is scaled alike. A
stack's slices get a range each, not the stack's one range of small planes:
that would read every slice whole.
"""

from __future__ import annotations

import copy
import threading

from ..batch.job import TILE_ABOVE
from ..embeddings import EmbeddingSource
from ..tiles import TiledPredictor
from ..tiles.reading import plane_intensity_range, plane_of


def model_side(engine) -> int | None:
    """The encoder's input side of ``engine`` (None for engines without a SAM model, such as test stand-ins)."""
    size = getattr(getattr(engine, "model", None), "image_size", None)
    return int(size) if size is not None else None


def needs_tiles(planes, engine) -> bool:
    """Whether ``planes``' planes are too large to embed whole for ``engine`` (the rule ``segment`` uses)."""
    side = model_side(engine)
    return side is not None and getattr(engine, "encoder", None) is not None and \
        max(planes.plane_shape) > TILE_ABOVE * side


class TiledPlane:
    """One slice handled by tiles: its :class:`~napari_sam.tiles.TiledPredictor`, image set, nothing embedded."""

    def __init__(self, predictor: TiledPredictor, slice_index) -> None:
        self.predictor = predictor
        self.slice_index = tuple(slice_index)

    @property
    def tiling(self):
        return self.predictor.tiling

    def describe_ready(self) -> str:
        t = self.tiling
        h, w = t.plane_shape
        return (f"{h} x {w} px, handled by tiles of {t.tile} px (halo {t.halo} px): "
                "a click embeds only the tiles it needs")

    def describe_click(self, where: str, found) -> str:
        y0, y1, x0, x1 = found.window
        text = f"{where}: decoded on the window rows {y0}-{y1}, columns {x0}-{x1}"
        if found.cut:
            text += (f"; the mask still reaches that window's border after {len(found.windows)} windows, "
                     "so it may be cut: add a box around the whole object")
        return text + "."


def decode_by_tiles(plane: TiledPlane, request):
    """The three candidates of ``request`` (a :class:`~napari_sam.prompts.DecodeRequest`): decode lane only.

    The user waits for it: other passes of the encoder (Embed stack) pause meanwhile (model/foreground.py).
    """
    predictor = plane.predictor.predictor
    with predictor.foreground.hold():
        return plane.predictor.predict_candidates(point_coords=request.point_coords,
                                                  point_labels=request.point_labels, box=request.box)


class TiledSlices:
    """The tiled planes of one image: one predictor per model, one contrast per slice (measured once)."""

    def __init__(self, planes, source: EmbeddingSource) -> None:
        self.planes, self.source = planes, source
        self._predictors: dict[int, tuple[object, TiledPredictor]] = {}
        self._ranges: dict[tuple, object] = {}
        self._lock = threading.Lock()

    def forget(self, planes) -> None:
        """The image's pixels changed: every contrast is measured again."""
        with self._lock:
            self.planes, self._ranges = planes, {}

    def _base(self, engine) -> TiledPredictor:
        with self._lock:
            held = self._predictors.get(id(engine))
            if held is None or held[0] is not engine:
                # A twin of the engine's encoder predictor: the same weights and precision, so
                # tile embeddings carry the engine's model id and precision like its planes do.
                held = self._predictors[id(engine)] = (engine, TiledPredictor(engine.encoder, source=self.source))
            return held[1]

    def at_hand(self, s, engine) -> TiledPlane | None:
        """Slice ``s`` ready at once (its contrast is known), else None."""
        with self._lock:
            known = s in self._ranges
        return self.prepare(s, engine) if known else None

    def prepare(self, s, engine) -> TiledPlane:
        """Slice ``s`` set on a predictor of its own: the contrast is measured (band by band) the first time.

        Each slice gets a shallow copy of the model's one predictor: it holds
        its own plane and tiling, and shares the decoder, used only by the
        decode lane.
        """
        array = plane_of(self.planes.data, s)
        with self._lock:
            known, value = s in self._ranges, self._ranges.get(s)
        if not known:
            value = plane_intensity_range(array)
            with self._lock:
                self._ranges[s] = value
        predictor = copy.copy(self._base(engine))
        predictor.set_image(array, intensity_range=value, slice_index=s)
        return TiledPlane(predictor, s)
