"""One tile's objects: segment the window, keep the objects this tile owns.

A tile keeps an object only when

* it does not reach an inner border of the window (it would be cut there:
  its whole self lies in a neighbour, given a halo larger than the object), and
* its centre lies in the tile's core (a whole object seen by several windows
  has the same centre in each, and exactly one core holds it).

So with a segmenter that finds every object it sees whole, each object is
kept once, whole. The centre test is done in whole numbers (the sum of the
object's row and column indices against the core's edges times its area):
two windows decide alike even for a centre that falls on a core's edge.

:func:`segment_tile` is a plain function of the image, one tile and the
segmenter, with a small picklable result: the per-tile job of a batch or a
dask.distributed run; :class:`~.stitch.LabelStitcher` puts results together.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..auto.labels import masks_to_labels
from .layout import Tile
from .reading import read_window


@dataclass
class TileObject:
    """One kept object: its mask cropped to its bounding box, where that lies, and the model's scores."""

    mask: np.ndarray  # bool (rows, columns)
    offset: tuple[int, int]  # (row, column) of mask[0, 0] in the plane
    predicted_iou: float | None = None
    stability_score: float | None = None
    index: int = -1  # the mask's place in the segmenter's output for this tile

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class TileResult:
    tile: Tile
    objects: list[TileObject] = field(default_factory=list)
    cut: int = 0  # objects dropped because they reached an inner border of the window
    elsewhere: int = 0  # whole objects whose centre lies in another tile's core
    too_large: int = 0  # cut pieces reaching further than the halo into the window: objects larger than the halo
    skipped: str = ""  # why the segmenter did not run ("" when it ran)


def segment_tile(array, tile: Tile, generator, plane_shape, *, intensity_range=None, slice_index=(),
                 halo: int | None = None) -> TileResult:
    """Read ``tile``'s window of ``array``, segment it with ``generator.generate`` and keep the tile's own objects."""
    pixels = read_window(array, tile.box)
    channels = pixels[..., :3] if pixels.ndim == 3 else pixels
    if np.all(channels == channels.flat[0]):
        # A constant window (the empty margin of a slide scan): nothing to find, and the generator refuses it.
        return TileResult(tile, skipped="constant")
    y0, y1, x0, x1 = tile.box
    records = generator.generate(pixels, intensity_range=intensity_range,
                                 slice_index=(*tuple(slice_index), y0, x0, y1, x1))
    return tile_objects(records, tile, plane_shape, halo=halo)


def tile_objects(records, tile: Tile, plane_shape, *, halo: int | None = None) -> TileResult:
    """The objects of one tile's masks (generator records or bool masks of the window) that the tile owns.

    With ``halo``, a cut piece reaching further than it from the border it touches is counted in
    ``too_large``: its object is wider than the halo and may be lost or cut (raise the halo).
    """
    result = TileResult(tile)
    if not len(records):
        return result
    # Masks of one window may overlap: the package's rule (the smaller one wins) makes them objects.
    labels, table = masks_to_labels(records, tile.shape)
    slices = ndimage.find_objects(labels)
    top, bottom, left, right = tile.inner_edges(plane_shape)
    h, w = tile.shape
    oy, ox = tile.origin
    cy0, cy1, cx0, cx1 = tile.core
    for row in table:
        k = row["label"]
        ys, xs = slices[k - 1]
        reach = [d for cut, d in ((top and ys.start == 0, ys.stop), (bottom and ys.stop == h, h - ys.start),
                                  (left and xs.start == 0, xs.stop), (right and xs.stop == w, w - xs.start)) if cut]
        if reach:
            result.cut += 1
            result.too_large += halo is not None and max(reach) > halo
            continue
        mask = labels[ys, xs] == k
        rr, cc = np.nonzero(mask)
        n = rr.size
        sum_y = int(rr.sum()) + n * (ys.start + oy)  # the sum of the plane's row indices of the object
        sum_x = int(cc.sum()) + n * (xs.start + ox)
        if not (cy0 * n <= sum_y < cy1 * n and cx0 * n <= sum_x < cx1 * n):
            result.elsewhere += 1
            continue
        result.objects.append(TileObject(mask, (oy + ys.start, ox + xs.start), row["predicted_iou"],
                                         row["stability_score"], row["mask_index"]))
    return result
