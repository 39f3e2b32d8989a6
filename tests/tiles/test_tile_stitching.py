import numpy as np
import pytest
import zarr

from napari_sam.auto import SegmentationCancelled
from napari_sam.tiles import LabelStitcher, TileObject, TileResult, plan_tiles, segment_tiled
from tile_helpers import OracleSegmenter, ReadingSpy, large_truth, same_objects


@pytest.fixture(scope="module")
def truth():
    return large_truth()


def test_an_oracle_segmenter_gives_back_the_truth_every_object_whole_and_once(truth):
    oracle = OracleSegmenter()
    result = segment_tiled(truth, oracle, tile=128, halo=32)
    assert len(result.tiling) > 40 and oracle.calls == len(result.tiling)
    assert same_objects(truth, result.labels)
    assert result.n_objects == len(np.unique(truth)) - 1
    assert result.duplicates == result.overlapped == result.too_large == 0
    assert result.cut > 0  # objects were cut by windows, and each was kept whole by the tile that owns it


def test_too_small_a_halo_cuts_objects_in_two_or_loses_them(truth):
    # The test can fail: the halo is what keeps large objects whole.
    result = segment_tiled(truth, OracleSegmenter(), tile=128, halo=4)
    assert not same_objects(truth, result.labels)
    assert result.too_large > 0 and "raise the halo" in result.summary()


def test_the_table_describes_the_written_labels(truth):
    result = segment_tiled(truth[:300, :300], OracleSegmenter(), tile=128, halo=32)
    labels = np.asarray(result.labels)
    for row in result.table[:20]:
        ys, xs = np.nonzero(labels == row["label"])
        assert row["area"] == ys.size
        assert (row["bbox_y0"], row["bbox_y1"], row["bbox_x0"], row["bbox_x1"]) == (ys.min(), ys.max() + 1,
                                                                                   xs.min(), xs.max() + 1)
        assert row["centroid_y"] == pytest.approx(ys.mean(), abs=0.01)


def test_labels_go_into_a_zarr_array_and_only_tile_windows_are_read(truth):
    spy = ReadingSpy(truth)
    out = zarr.create_array(store=zarr.storage.MemoryStore(), shape=truth.shape, chunks=(128, 128), dtype="uint32")
    result = segment_tiled(spy, OracleSegmenter(), out, tile=128, halo=32, intensity_range=(0, 1000))
    assert result.labels is out and same_objects(truth, out[:])
    windows = {tuple((k.start, k.stop) for k in key) for key in spy.reads}
    assert windows == {((t.box[0], t.box[1]), (t.box[2], t.box[3])) for t in result.tiling}


def test_from_a_tiff_read_as_zarr(truth, tmp_path):
    import tifffile

    path = tmp_path / "mosaic.tif"
    tifffile.imwrite(path, truth, tile=(128, 128))
    image = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    result = segment_tiled(image, OracleSegmenter(), tile=128, halo=32)
    assert same_objects(truth, result.labels)


def test_an_object_found_by_two_tiles_is_written_once():
    tiling = plan_tiles((300, 300), 200, 50)
    a, b = tiling.tiles[0], tiling.tiles[1]
    mask = np.zeros((20, 20), bool)
    mask[2:18, 2:18] = True
    shifted = np.zeros((20, 20), bool)
    shifted[3:19, 2:18] = True
    stitcher = LabelStitcher(None, (300, 300))
    assert stitcher.add(TileResult(a, [TileObject(mask, (100, 140))])) == 1
    assert stitcher.add(TileResult(b, [TileObject(shifted, (100, 140))])) == 0
    assert stitcher.duplicates == 1 and stitcher.n_objects == 1


def test_an_object_mostly_under_another_is_dropped_and_a_neighbour_keeps_its_own_pixels():
    tiling = plan_tiles((300, 300), 200, 50)
    a, b = tiling.tiles[0], tiling.tiles[1]
    big = np.ones((40, 40), bool)
    small = np.ones((10, 10), bool)
    stitcher = LabelStitcher(None, (300, 300), duplicate_iou=0.9)
    stitcher.add(TileResult(a, [TileObject(big, (100, 120))]))
    stitcher.add(TileResult(b, [TileObject(small, (105, 125)), TileObject(small, (135, 155))]))
    labels = stitcher.out
    assert stitcher.overlapped == 1 and stitcher.n_objects == 2
    assert (labels == 1).sum() == 40 * 40  # what was written first keeps its pixels
    assert (labels == 2).sum() == 100 - 25 == stitcher.rows[1]["area"]  # the second small one took only free pixels


def test_cancel_and_progress(truth):
    calls = []
    with pytest.raises(SegmentationCancelled, match="after 3 of"):
        segment_tiled(truth, OracleSegmenter(), tile=128, halo=32, progress=lambda d, t: calls.append(d),
                      should_cancel=lambda: len(calls) > 3)
    assert calls == [0, 1, 2, 3]


def test_constant_windows_are_not_segmented():
    plane = np.zeros((400, 400), np.uint16)
    plane[20:40, 20:40] = 5
    oracle = OracleSegmenter()
    result = segment_tiled(plane, oracle, tile=128, halo=16)
    assert result.empty_tiles == len(result.tiling) - oracle.calls > 0 and result.n_objects == 1


@pytest.mark.parametrize("out, message", [(np.zeros((5, 5), np.uint32), "shape"),
                                          (np.zeros((700, 900), np.float32), "integer")])
def test_a_bad_output_array_says_what_is_wrong(truth, out, message):
    with pytest.raises(ValueError, match=message):
        segment_tiled(truth, OracleSegmenter(), out, tile=128, halo=32)


@pytest.mark.parametrize("image, error, message", [
    (np.zeros((3, 50, 50)), ValueError, "one plane at a time"), (np.zeros((1, 100_000)), ValueError, "1 x 100000"),
    (np.zeros((50, 50), complex), TypeError, "dtype")])
def test_bad_images_get_clear_messages(image, error, message):
    with pytest.raises(error, match=message):
        segment_tiled(image, OracleSegmenter(), tile=128, halo=32)


def test_a_segmenter_without_a_model_needs_a_tile_size(truth):
    with pytest.raises(ValueError, match="pass tile="):
        segment_tiled(truth, OracleSegmenter())


def test_the_demo_model_segments_tiles_through_the_embedding_store(tmp_path):
    import torch

    from napari_sam.auto import AutomaticMaskGenerator
    from napari_sam.embeddings import EmbeddingSource
    from napari_sam.model import load_model
    from napari_sam.model.registry import DEMO_AUTO_SETTINGS
    from napari_sam.synthetic import make_nuclei_2d
    from napari_sam.volume import EmbeddingStore

    torch.set_num_threads(2)
    image, truth = make_nuclei_2d((256, 360), n_objects=(30, 30), seed=21, dtype=np.uint16)
    model, store = load_model("demo"), EmbeddingStore(tmp_path / "store")
    settings = {**DEMO_AUTO_SETTINGS, "points_per_side": 10}
    first = AutomaticMaskGenerator(model, source=EmbeddingSource(store=store), **settings)
    a = segment_tiled(image, first, halo=32)
    assert len(a.tiling) == 2 and first.source.encoder_calls == 2 and a.n_objects > 0.3 * truth.max()
    again = AutomaticMaskGenerator(model, source=EmbeddingSource(store=store), **settings)
    b = segment_tiled(image, again, halo=32)
    assert again.source.encoder_calls == 0 and again.source.disk_reads == 2
    assert np.array_equal(a.labels, b.labels)
