"""A large plane on a cluster as one task per tile: a worker lost mid-plane loses only the tile it was on.

The plain loop segments such a plane with :func:`napari_sam.tiles.segment_tiled`;
here its steps are shared out, and the result is the same to the pixel:

1. Here (the machine that submits): :func:`plane_tiling` reads the plane's
   shape from the file's header and plans its tiles
   (:func:`~napari_sam.tiles.tiling_for`, the plain loop's plan).
2. :func:`plan_plane` (a worker) opens the plane, checks it and measures its
   contrast once (:func:`~napari_sam.tiles.plane_intensity_range`): every
   tile is scaled alike, as in the plain loop.
3. :func:`segment_plane_tile` (a worker per tile) opens the plane itself from
   its path, reads only its tile's window and segments it with the model the
   worker loaded once (:func:`~napari_sam.tiles.segment_tile`). It returns
   the tile's objects, small crops, never the image.
4. Here, :class:`PlaneAssembly` stitches the tiles' objects as they arrive,
   in raster order (:class:`~napari_sam.tiles.RasterStitch` holds back the
   early ones), and writes the labels and the table (:mod:`.outputs`).

No task raises for a problem of its input: each hands on what went wrong,
and the assembly turns it into the plane's :class:`~.job.Result`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from .inputs import Input
from .job import TILE_ABOVE, JobSpec, Result, failure_reason, generator_for, goes_by_tiles, voxel_size_for
from .outputs import is_finished, output_paths, write_results

#: No model of the zoo has an input under this many pixels. A plane no larger than TILE_ABOVE times it
#: on a side is sent as one file task without asking a worker for the model's input size (which loads
#: the model there); a worker that finds it must be tiled after all tiles it itself, to the same labels.
SMALLEST_MODEL_INPUT = 256


@dataclass(frozen=True)
class PlanePlan:
    """What every tile task of one plane needs; small, sent to the workers with the tasks."""

    item: Input
    intensity_range: tuple | None  # the whole plane's; None for uint8 planes
    voxel_size: tuple | None
    ome: dict | None


@dataclass(frozen=True)
class TileFailed:
    """A tile task's answer when its tile could not be segmented."""

    index: tuple  # the tile's (row, column) in the grid
    reason: str
    disk_full: bool = False


def may_need_tiles(item: Input, spec: JobSpec, out) -> tuple | None:
    """The plane's (rows, columns) when ``item`` is a plane still to segment that may go by tiles, else None.

    Read here from the file's header only; an input that cannot be opened goes as a file task, which says why.
    """
    if spec.tile == 0 or (not spec.overwrite and is_finished(Path(out), item.name, item.kind)):
        return None
    try:
        opened = _open_plane(item, spec)
    except Exception:
        return None
    try:
        if opened.axes == "zyx":
            return None
        shape = tuple(int(s) for s in opened.data.shape[:2])
    finally:
        opened.close()
    if spec.tile is None and max(shape) <= TILE_ABOVE * SMALLEST_MODEL_INPUT:
        return None
    return shape


def model_input(spec: JobSpec) -> int:
    """(A worker) the model's input size in pixels: the default tile."""
    return int(generator_for(spec).predictor.model.image_size)


def plane_tiling(shape, side: int, spec: JobSpec):
    """The plain loop's tiles of a plane of ``shape``, or None when the plain loop segments it whole."""
    from ..tiles import tiling_for

    if not goes_by_tiles(shape, side, spec):
        return None
    return tiling_for(shape, side, tile=spec.tile, halo=spec.halo, object_diameter=spec.object_diameter)


def _open_plane(item: Input, spec: JobSpec):
    from .readers import open_input

    return open_input(item, channel=spec.channel, allow_missing_chunks=spec.allow_missing_chunks)


def plan_plane(item: Input, spec: JobSpec) -> PlanePlan | Result:
    """Step 2 (a worker): the plane checked and its contrast measured, or the Result saying why not."""
    from ..tiles import plane_intensity_range

    try:
        opened = _open_plane(item, spec)
        try:
            voxel_size = voxel_size_for(opened, spec)
            intensity_range = plane_intensity_range(opened.data)
            ome = opened.ome
        finally:
            opened.close()
    except Exception as err:
        result = Result(str(item.path), item.name, "failed", worker=f"pid {os.getpid()}")
        result.reason, result.disk_full = failure_reason(err)
        return result
    if intensity_range is not None:
        intensity_range = tuple(float(v) for v in intensity_range)
    return PlanePlan(item, intensity_range, voxel_size, ome)


def segment_plane_tile(plan: PlanePlan | Result, tile, plane_shape, halo: int, spec: JobSpec):
    """Step 3 (a worker): ``tile`` read from the file and segmented; its TileResult, or TileFailed.

    Only this tile (not the whole tiling) travels with the task: a slide scan has thousands of tiles.
    """
    from ..tiles import segment_tile

    if isinstance(plan, Result):
        return TileFailed(tile.index, "the plane could not be opened")
    try:
        opened = _open_plane(plan.item, spec)
        try:
            return segment_tile(opened.data, tile, generator_for(spec), plane_shape,
                                intensity_range=plan.intensity_range, halo=halo)
        finally:
            opened.close()
    except Exception as err:
        reason, disk_full = failure_reason(err)
        return TileFailed(tile.index, f"tile {tile.index[0]},{tile.index[1]}: {reason}", disk_full)


class PlaneAssembly:
    """Step 4 (here): one plane's tiles stitched as they come back, then its results written."""

    def __init__(self, item: Input, plan, tiling, out) -> None:
        from ..tiles import RasterStitch

        self.item, self.plan, self.out = item, plan, Path(out)
        self.stitch = RasterStitch(tiling)
        self.start = time.perf_counter()
        self.failed: Result | None = None

    def _result(self, status: str, **fields) -> Result:
        return Result(str(self.item.path), self.item.name, status,
                      output=str(output_paths(self.out, self.item.name, self.item.kind)[0]),
                      seconds=time.perf_counter() - self.start, **fields)

    def fail(self, result: Result) -> Result:
        """The plane failed (a tile's workers kept dying): its Result, once."""
        self.failed = result
        return result

    def take(self, position: int, answer) -> Result | None:
        """A tile task's answer; the plane's Result once the last tile is in (or the first failure), else None."""
        if self.failed is not None:
            return None
        if isinstance(answer, TileFailed):
            plan = self.plan.result()
            if isinstance(plan, Result):  # the plane itself could not be opened: that reason, not the tile's
                return self.fail(self._result("failed", reason=plan.reason, disk_full=plan.disk_full))
            return self.fail(self._result("failed", reason=answer.reason, disk_full=answer.disk_full))
        self.stitch.add(position, answer)
        if not self.stitch.complete:
            return None
        plan = self.plan.result()
        segmented = self.stitch.finish()
        try:
            write_results(self.out, self.item.name, self.item.kind, segmented.labels, segmented.table,
                          plan.voxel_size, plan.ome)
        except Exception as err:
            reason, disk_full = failure_reason(err)
            return self.fail(self._result("failed", reason=reason, disk_full=disk_full))
        return self._result("done", n_objects=len(segmented.table), worker="this machine (stitched)")
