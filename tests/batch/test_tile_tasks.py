"""A plane large enough to tile, on a dask LocalCluster of 2 workers as one task per tile: the plain loop's labels."""

import functools

import cloudpickle
import numpy as np
import pytest
import torch
from batch_helpers import FAST

import cluster_jobs
from napari_sam.batch import command
from napari_sam.batch.runners import local_threads
from napari_sam.cli import build_parser, main
from napari_sam.synthetic import make_nuclei_2d
from napari_sam.tiles import RasterStitch, plan_tiles
from napari_sam.tiles.objects import TileObject, TileResult
from napari_sam.writers import read_labels_tiff

cloudpickle.register_pickle_by_value(cluster_jobs)

# The demo model's input is 256 px: a 700 px plane is tiled (over twice the input); halo 32 px: 4 x 4 tiles.
TILES = ["--object-diameter", "32"]


@pytest.fixture
def plane(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    image = make_nuclei_2d((700, 700), n_objects=(60, 70), seed=5, radius_range=(8.0, 14.0))[0]
    np.save(folder / "slide.npy", image.astype(np.uint16) * 40)  # uint16: the plane's one contrast matters
    return folder


def test_a_tiled_plane_goes_tile_by_tile_a_killed_worker_costs_one_tile_and_the_labels_are_the_plain_loops(
        plane, tmp_path, capsys):
    markers, out = tmp_path / "markers", tmp_path / "cluster"
    markers.mkdir()
    args = build_parser().parse_args(["segment", str(plane), "--out", str(out), "--workers", "2", *FAST, *TILES])
    assert command.run_segment(args, tile_job=functools.partial(cluster_jobs.dying_tile, str(markers))) == 0
    assert "1 segmented, 0 skipped, 0 failed" in capsys.readouterr().err
    # Each of the 16 tiles was its own task; the tile whose worker was killed was done by another process;
    # both workers segmented tiles. A tile segmented twice is one whose answer died with the killed worker's
    # memory before it was sent back, nothing else.
    ran = [p.name.split("-") for p in markers.iterdir() if p.name != "killed"]
    assert {t for t, _, _ in ran} == {f"tile{r}.{c}" for r in range(4) for c in range(4)}
    assert len({pid for _, pid, _ in ran}) >= 2
    killed = "pid" + (markers / "killed").read_text()
    assert [pid for t, pid, _ in ran if t == "tile1.1"] != [killed]
    for tile in {t for t, _, _ in ran}:
        pids = [pid for t, pid, _ in ran if t == tile]
        assert len(pids) == 1 or (len(pids) == 2 and killed in pids), (tile, pids, killed)

    # The plain loop, with the workers' torch threads so that sums add up alike.
    threads = torch.get_num_threads()
    torch.set_num_threads(local_threads(2))
    try:
        assert main(["segment", str(plane), "--out", str(tmp_path / "plain"), *FAST, *TILES, "--quiet"]) == 0
    finally:
        torch.set_num_threads(threads)
    here, _ = read_labels_tiff(tmp_path / "plain" / "slide.labels.tif")
    there, _ = read_labels_tiff(out / "slide.labels.tif")
    assert here.max() >= 30 and np.array_equal(here, there)
    assert (tmp_path / "plain" / "slide.objects.csv").read_text() == (out / "slide.objects.csv").read_text()


def test_tiles_handed_over_in_any_order_are_stitched_as_in_raster_order():
    tiling = plan_tiles((40, 40), 24, 4)  # 2 x 2 tiles overlapping by 8 px
    # The same square seen by all four tiles (a real model draws it slightly differently in each): the first
    # tile written keeps it, so the order of writing decides which copy and which label stays.
    results = []
    for k, t in enumerate(tiling):
        mask = np.ones((6, 6 + k % 2), bool)
        results.append(TileResult(t, [TileObject(mask, (17, 17), 0.9 - k / 10, 0.9, k)]))
        results[-1].objects.append(TileObject(np.ones((3, 3), bool), (t.core[0], t.core[2]), 0.5, 0.5, 9))

    def stitched(order):
        stitch = RasterStitch(tiling)
        for position in order:
            assert not stitch.complete
            stitch.add(position, results[position])
        out = stitch.finish()
        return out.labels, out.table, out.duplicates

    labels, table, duplicates = stitched([0, 1, 2, 3])
    assert duplicates == 3 and table[0]["mask_index"] == 0
    for order in ([3, 2, 1, 0], [2, 0, 3, 1]):
        other, other_table, other_duplicates = stitched(order)
        assert np.array_equal(other, labels) and other_table == table and other_duplicates == duplicates
    stitch = RasterStitch(tiling)
    stitch.add(1, results[1])
    assert stitch.add(1, results[1]) == 0  # a retried task's second answer changes nothing
    with pytest.raises(ValueError, match="only 0 of 4 tiles are stitched"):
        stitch.finish()
    with pytest.raises(ValueError, match="that of another tile"):
        stitch.add(2, results[3])
    with pytest.raises(ValueError, match="tile 4 is not one of the 4 tiles"):
        stitch.add(4, results[3])
