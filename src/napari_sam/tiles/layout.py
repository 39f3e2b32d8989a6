"""Where the tiles of a large plane lie: overlapping windows, each with a core that it owns.

Along each axis the plane is covered by windows of ``tile`` pixels, spaced
evenly so that neighbours overlap by at least ``2 * halo`` pixels; every
window lies wholly inside the plane (an image smaller than a tile is one
window of its own size), so the model always sees a full field. The
*cores* cut the plane into pieces without overlap: the boundary between two
neighbouring cores runs through the middle of their overlap, so a core lies
at least ``halo`` pixels inside its window's inner borders (borders shared
with the image do not count).

Why the halo must exceed the largest object's diameter: an object whose
centre lies in a core then lies whole inside that core's window, not
touching its inner border, so it is seen whole in at least one tile.

Boxes here are ``(y0, y1, x0, x1)`` half-open pixel ranges, as numpy slices
take them (``plane[y0:y1, x0:x1]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The halo when the object size is not known: the demo model's largest nuclei are 60 px across.
DEFAULT_OBJECT_DIAMETER = 64
#: Thinner than this, a plane is a line, not an image: the model sees no objects in it.
MIN_SIDE = 8


@dataclass(frozen=True)
class Tile:
    """One window of a tiled plane and the core it owns."""

    index: tuple[int, int]  # (row, column) of the tile in the grid
    box: tuple[int, int, int, int]  # (y0, y1, x0, x1) of the window
    core: tuple[int, int, int, int]  # (y0, y1, x0, x1) of the core, inside box

    @property
    def slices(self) -> tuple[slice, slice]:
        y0, y1, x0, x1 = self.box
        return slice(y0, y1), slice(x0, x1)

    @property
    def shape(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.box
        return y1 - y0, x1 - x0

    @property
    def origin(self) -> tuple[int, int]:
        return self.box[0], self.box[2]

    def inner_edges(self, plane_shape) -> tuple[bool, bool, bool, bool]:
        """(top, bottom, left, right): True where the window's border lies inside the plane, not on its edge."""
        y0, y1, x0, x1 = self.box
        return y0 > 0, y1 < plane_shape[0], x0 > 0, x1 < plane_shape[1]

    def owns(self, y: float, x: float) -> bool:
        """Whether the point (plane coordinates, pixel centres at .5) lies in this tile's core."""
        y0, y1, x0, x1 = self.core
        return y0 <= y < y1 and x0 <= x < x1


@dataclass(frozen=True)
class Tiling:
    """The tiles of one plane, in raster order (row by row)."""

    plane_shape: tuple[int, int]
    tile: int
    halo: int
    tiles: tuple[Tile, ...]
    grid: tuple[int, int]  # tiles per column, tiles per row

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)

    def owner(self, y: float, x: float) -> Tile:
        """The tile whose core holds the point (plane coordinates)."""
        for t in self.tiles:
            if t.owns(y, x):
                return t
        raise ValueError(f"the point (y={y}, x={x}) lies outside the {self.plane_shape} plane")


def choose_tile_and_halo(model_input: int, object_diameter: float | None = None, *, tile: int | None = None,
                         halo: int | None = None) -> tuple[int, int]:
    """(tile, halo) for a model whose encoder takes ``model_input`` pixels, and objects up to ``object_diameter``.

    The tile is the model's input size, so each tile reaches the encoder at full
    resolution (SAM resizes a larger window down, losing small objects); the
    halo is the object diameter, rounded up to a multiple of 8. Either may be set.
    """
    model_input = _whole("model_input", model_input, 1)
    if tile is None:
        tile = model_input
    if halo is None:
        diameter = DEFAULT_OBJECT_DIAMETER if object_diameter is None else object_diameter
        if isinstance(diameter, bool) or not isinstance(diameter, (int, float)) or not math.isfinite(diameter) \
                or diameter <= 0:
            raise ValueError(f"object_diameter must be a positive number of pixels, got {object_diameter!r}")
        halo = 8 * math.ceil(diameter / 8)
    check_tile_and_halo(tile, halo)
    return int(tile), int(halo)


def check_tile_and_halo(tile, halo) -> None:
    """A ValueError saying what to change when a tile would have no core to own."""
    tile = _whole("tile", tile, MIN_SIDE)
    halo = _whole("halo", halo, 0)
    if tile - 2 * halo < 1:
        raise ValueError(
            f"a tile of {tile} px with a halo of {halo} px on each side leaves no core: the tile must be larger "
            f"than twice the halo ({2 * halo} px); use a larger tile or a halo below {(tile + 1) // 2} px "
            "(the halo should exceed the largest object's diameter)")


def plan_tiles(plane_shape, tile: int, halo: int) -> Tiling:
    """The tiling of a (rows, columns) plane; see the module's description."""
    check_tile_and_halo(tile, halo)
    shape = tuple(int(s) for s in plane_shape)
    if len(shape) != 2:
        raise ValueError(f"plane_shape must be (rows, columns), got {tuple(plane_shape)}")
    if min(shape) < MIN_SIDE:
        raise ValueError(
            f"the plane is {shape[0]} x {shape[1]} pixels: tiles need at least {MIN_SIDE} pixels on each side. "
            "A line scan or a wrongly shaped array? Reshape it to (rows, columns), or pass one image of a stack")
    rows, columns = (_axis(n, tile, halo) for n in shape)
    tiles = tuple(Tile((i, j), (ys, ye, xs, xe), (cy0, cy1, cx0, cx1))
                  for i, ((ys, ye), (cy0, cy1)) in enumerate(rows)
                  for j, ((xs, xe), (cx0, cx1)) in enumerate(columns))
    return Tiling(shape, int(tile), int(halo), tiles, (len(rows), len(columns)))


def _axis(n: int, tile: int, halo: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """[(window, core)] along one axis of ``n`` pixels."""
    if n <= tile:
        return [((0, n), (0, n))]
    step = tile - 2 * halo  # the largest spacing that keeps an overlap of 2 * halo
    count = 1 + math.ceil((n - tile) / step)
    starts = [round(k * (n - tile) / (count - 1)) for k in range(count)]
    windows = [(s, s + tile) for s in starts]
    # Each core boundary: the middle of the overlap of two neighbours.
    cuts = [0] + [(windows[k + 1][0] + windows[k][1]) // 2 for k in range(count - 1)] + [n]
    return [(windows[k], (cuts[k], cuts[k + 1])) for k in range(count)]


def window_around(plane_shape, centre_yx, size_yx) -> tuple[int, int, int, int]:
    """A (y0, y1, x0, x1) window of ``size_yx`` centred on ``centre_yx``, shifted to lie inside the plane."""
    box = []
    for n, c, s in zip(plane_shape, centre_yx, size_yx):
        s = int(min(max(int(s), 1), n))
        start = int(round(c - s / 2))
        start = min(max(start, 0), n - s)
        box += [start, start + s]
    return tuple(box)


def _whole(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, float) and value.is_integer()):
        raise ValueError(f"{name} must be a whole number of pixels, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low} pixels, got {value}")
    return int(value)
