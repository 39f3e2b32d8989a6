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
from .objects import segment_tile
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
    """
    array = check_plane_array(array)
    shape = tuple(int(s) for s in array.shape[:2])
    # 1. The tiles.
    model_input = _model_input(generator, tile)
    tile, halo = choose_tile_and_halo(model_input, object_diameter, tile=tile, halo=halo)
    tiling = plan_tiles(shape, tile, halo)
    stitcher = LabelStitcher(out, shape, duplicate_iou=duplicate_iou, clear=clear_out)
    # 2. One contrast for every tile.
    if intensity_range is None:
        intensity_range = plane_intensity_range(array)
    result = TiledSegmentation(stitcher.out, stitcher.rows, tiling, intensity_range)
    total = len(tiling)
    if progress is not None:
        progress(0, total)
    for done, t in enumerate(tiling, start=1):
        if should_cancel is not None and should_cancel():
            raise SegmentationCancelled(f"cancelled after {done - 1} of {total} tiles")
        # 3. This tile's own objects ...
        found = segment_tile(array, t, generator, shape, intensity_range=intensity_range, slice_index=slice_index,
                             halo=halo)
        result.cut += found.cut
        result.too_large += found.too_large
        result.empty_tiles += found.skipped == "constant"
        # 4. ... written where no neighbour wrote them already.
        stitcher.add(found)
        if progress is not None:
            progress(done, total)
    result.duplicates, result.overlapped = stitcher.duplicates, stitcher.overlapped
    return result


def _model_input(generator, tile) -> int:
    """The encoder's input size (the default tile), or the given tile for a segmenter without a SAM model."""
    model = getattr(getattr(generator, "predictor", None), "model", None)
    size = getattr(model, "image_size", None)
    if size is not None:
        return int(size)
    if tile is None:
        raise ValueError("this segmenter has no SAM model to take the tile size from: pass tile= (pixels)")
    return tile
