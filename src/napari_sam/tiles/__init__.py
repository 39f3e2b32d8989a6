"""Large images by tiles: planes bigger than the model's input, read lazily, with memory bounded by a few tiles.

Plain Python (torch, numpy, scipy), no napari or Qt.

* :mod:`.layout` — where the tiles lie: overlapping windows (the halo) and the core each one owns.
* :mod:`.reading` — windows of any sliceable array (numpy, memmap, zarr, dask), the plane's contrast band by band.
* :mod:`.embeddings` — :class:`TileEmbeddings`: a tile's embedding through the package's cache and store.
* :mod:`.interactive` — :class:`TiledPredictor`: a click decoded on the tile that suits it, masks whole across borders
  (one mask, or the annotator's three candidates).
* :mod:`.objects` — one tile's objects: segmented, kept when whole and centred in the core (the per-tile job).
* :mod:`.stitch` — :class:`LabelStitcher`: tiles' objects into one label image, each object once.
* :mod:`.segment` — :func:`segment_tiled`: segment everything on a plane of any size; its steps
  (:func:`tiling_for`, :class:`RasterStitch`) also run as one task per tile on a dask cluster.
"""

from .embeddings import TileEmbeddings
from .interactive import TiledCandidates, TiledMask, TiledPredictor
from .layout import Tile, Tiling, check_tile_and_halo, choose_tile_and_halo, plan_tiles
from .objects import TileObject, TileResult, segment_tile, tile_objects
from .reading import check_plane_array, plane_intensity_range, read_window
from .segment import RasterStitch, TiledSegmentation, segment_tiled, tiling_for
from .stitch import LabelStitcher

__all__ = [
    "LabelStitcher", "RasterStitch", "Tile", "TileEmbeddings", "TileObject", "TileResult", "TiledCandidates", "TiledMask", "TiledPredictor",
    "TiledSegmentation", "Tiling", "check_plane_array", "check_tile_and_halo", "choose_tile_and_halo",
    "plan_tiles", "plane_intensity_range", "read_window", "segment_tile", "segment_tiled", "tile_objects", "tiling_for",
]
