"""Segment everything on a plane of any size, tile by tile, with memory bounded by a few tiles.

Usage::

    import tifffile, zarr
    image = zarr.open(tifffile.imread("slide.tif", aszarr=True), mode="r")   # nothing read yet
    out = zarr.open("slide_labels.zarr", mode="w", shape=image.shape, chunks=(1024, 1024), dtype="uint32")
    result = segment_tiled(image, AutomaticMaskGenerator(load_model("demo"), **settings), out)
    result.table      # one row per object, as napari_sam.auto.labels makes it

The steps:

1. Plan the tiles (:mod:`.layout`): windows of the model's input size that
   overlap by twice the halo; the halo is at least the largest object.
2. Find the plane's contrast once, band by band, so that every tile is
   scaled alike (:func:`~.reading.plane_intensity_range`).
3. For each tile in raster order: read its window, segment it with the
   generator (its embedding goes through the generator's embedding source),
   keep the objects that lie whole in the window and are centred in its core
   (:mod:`.objects`).
4. Write them into ``out``, dropping an object that a neighbour already
   wrote (IoU) or that is mostly covered (:mod:`.stitch`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..auto.decode import SegmentationCancelled
from ..progress import CancelCheck, ProgressCallback
from .layout import Tiling, choose_tile_and_halo, plan_tiles
from .objects import TileResult, segment_tile
from .reading import check_plane_array, plane_intensity_range
from .stitch import DUPLICATE_IOU, LabelStitcher


@dataclass
class TiledSegmentation:
    labels: object  # the output array (``out``, or a new uint32 numpy array)
    table: list[dict]  # one row per label (napari_sam.auto.labels.TABLE_COLUMNS)
    tiling: Tiling
    intensity_range: tuple[float, float] | None
    cut: int = 0  # objects reaching an inner window border, dropped there (seen whole by a neighbour if the halo allows)
    duplicates: int = 0  # objects found by two tiles, written once
    overlapped: int = 0  # objects dropped because earlier ones covered most of them
    empty_tiles: int = 0  # constant windows, not segmented
    too_large: int = 0  # cut pieces wider than the halo: objects that may be lost or cut (raise the halo)

    @property
    def n_objects(self) -> int:
        return len(self.table)

    def summary(self) -> str:
        return (f"{self.n_objects} objects from {len(self.tiling)} tiles of {self.tiling.tile} px "
                f"(halo {self.tiling.halo} px); {self.duplicates} found twice at tile borders and written once, "
                f"{self.overlapped} dropped as covered by others, {self.empty_tiles} empty tiles"
                + (f"; {self.too_large} cut pieces wider than the halo: objects larger than {self.tiling.halo} px "
                   "may be lost or cut, raise the halo" if self.too_large else ""))


def segment_tiled(array, generator, out=None, *, tile: int | None = None, halo: int | None = None,
                  object_diameter: float | None = None, intensity_range=None, slice_index=(),
                  duplicate_iou: float = DUPLICATE_IOU, clear_out: bool = True,
                  progress: ProgressCallback | None = None,
                  should_cancel: CancelCheck | None = None) -> TiledSegmentation:
    """Segment ``array`` (a 2D plane or RGB image, read lazily) tile by tile into ``out``; see the module's steps.

    ``generator``: an :class:`~napari_sam.auto.AutomaticMaskGenerator` (anything
    with ``generate(plane, intensity_range=, slice_index=)`` returning its
    records or bool masks). ``tile`` / ``halo`` default to the model's input
    size and ``object_diameter`` (see :func:`~.layout.choose_tile_and_halo`).
    ``out``: where labels go (zarr, memmap ...; None: a numpy array in memory);
    ``clear_out=False`` trusts that it holds zeros (a new zarr array does).
    Raises :class:`~napari_sam.auto.SegmentationCancelled` when
    ``should_cancel()`` turns True between tiles; ``out`` then holds the tiles done.

    The same steps run as one task per tile on a dask cluster
    (:mod:`napari_sam.batch.plane_tiles`): :func:`tiling_for`, one
    :func:`~.objects.segment_tile` per tile, :class:`RasterStitch`.
    """
    array = check_plane_array(array)
    shape = tuple(int(s) for s in array.shape[:2])
    # 1. The tiles.
    tiling = tiling_for(shape, _model_input(generator, tile), tile=tile, halo=halo, object_diameter=object_diameter)
    # 2. One contrast for every tile.
    if intensity_range is None:
        intensity_range = plane_intensity_range(array)
    stitch = RasterStitch(tiling, out, intensity_range, duplicate_iou=duplicate_iou, clear_out=clear_out)
    total = len(tiling)
    if progress is not None:
        progress(0, total)
    for position, t in enumerate(tiling):
        if should_cancel is not None and should_cancel():
            raise SegmentationCancelled(f"cancelled after {position} of {total} tiles")
        # 3. This tile's own objects, 4. written where no neighbour wrote them already.
        stitch.add(position, segment_tile(array, t, generator, shape, intensity_range=intensity_range,
                                          slice_index=slice_index, halo=tiling.halo))
        if progress is not None:
            progress(position + 1, total)
    return stitch.finish()


def tiling_for(shape, model_input: int, *, tile: int | None = None, halo: int | None = None,
               object_diameter: float | None = None) -> Tiling:
    """Step 1: the tiles of a plane of ``shape`` for a model whose input is ``model_input`` pixels."""
    tile, halo = choose_tile_and_halo(model_input, object_diameter, tile=tile, halo=halo)
    return plan_tiles(tuple(int(s) for s in shape[:2]), tile, halo)


class RasterStitch:
    """Step 4: tiles' results, handed over in any order, stitched in raster order.

    Which of two copies of an object seen by neighbouring tiles is kept
    depends on which tile is written first, so results that come early (a
    cluster's workers finish tiles in any order) wait here until every tile
    before them is written: the labels are those of the plain loop, to the pixel.
    """

    def __init__(self, tiling: Tiling, out=None, intensity_range=None, *, duplicate_iou: float = DUPLICATE_IOU,
                 clear_out: bool = True) -> None:
        self.stitcher = LabelStitcher(out, tiling.plane_shape, duplicate_iou=duplicate_iou, clear=clear_out)
        self.result = TiledSegmentation(self.stitcher.out, self.stitcher.rows, tiling, intensity_range)
        self.written = 0  # tiles 0 .. written - 1 are in the labels
        self._waiting: dict[int, TileResult] = {}

    @property
    def complete(self) -> bool:
        return self.written == len(self.result.tiling)

    def add(self, position: int, found: TileResult) -> int:
        """Take tile ``position``'s result; write it and every waiting one that follows. Returns the tiles written."""
        if not 0 <= position < len(self.result.tiling):
            raise ValueError(f"tile {position} is not one of the {len(self.result.tiling)} tiles of this plane")
        if found.tile != self.result.tiling.tiles[position]:
            raise ValueError(f"the result given for tile {position} is that of another tile ({found.tile.index})")
        if position < self.written or position in self._waiting:
            return self.written  # a task run twice (a retried one): its first result counts
        self._waiting[position] = found
        while self.written in self._waiting:
            found = self._waiting.pop(self.written)
            self.result.cut += found.cut
            self.result.too_large += found.too_large
            self.result.empty_tiles += found.skipped == "constant"
            self.stitcher.add(found)
            self.written += 1
        return self.written

    def finish(self) -> TiledSegmentation:
        """The plane's labels and table, once every tile is written."""
        if not self.complete:
            raise ValueError(f"only {self.written} of {len(self.result.tiling)} tiles are stitched")
        self.result.duplicates, self.result.overlapped = self.stitcher.duplicates, self.stitcher.overlapped
        return self.result


def _model_input(generator, tile) -> int:
    """The encoder's input size (the default tile), or the given tile for a segmenter without a SAM model."""
    model = getattr(getattr(generator, "predictor", None), "model", None)
    size = getattr(model, "image_size", None)
    if size is not None:
        return int(size)
    if tile is None:
        raise ValueError("this segmenter has no SAM model to take the tile size from: pass tile= (pixels)")
    return tile
