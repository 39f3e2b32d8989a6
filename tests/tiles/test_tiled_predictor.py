import numpy as np
import pytest
import torch
from skimage.draw import disk

from napari_sam.embeddings import EmbeddingSource
from napari_sam.model import SamPredictor, load_model
from napari_sam.synthetic import make_nuclei_2d
from napari_sam.tiles import TiledPredictor
from napari_sam.volume import EmbeddingStore


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return load_model("demo")  # 256 px input


@pytest.fixture(scope="module")
def scene():
    return make_nuclei_2d((600, 600), n_objects=(60, 60), seed=11, dtype=np.uint16)


def _click_inside(truth, tiling):
    """The centre of a true object that lies whole in the middle of a tile."""
    for label in range(1, truth.max() + 1):
        ys, xs = np.nonzero(truth == label)
        y, x = int(round(ys.mean())), int(round(xs.mean()))
        if truth[y, x] == label and 0 < ys.min() and ys.max() < 599 and any(
                t.box[0] + 60 < ys.min() and ys.max() < t.box[1] - 60 and t.box[2] + 60 < xs.min() and
                xs.max() < t.box[3] - 60 for t in tiling):
            return label, x, y
    raise AssertionError("no object in the middle of a tile")


def test_a_click_embeds_only_its_tile_and_gives_what_the_predictor_gives_on_that_window(model, scene):
    image, truth = scene
    source = EmbeddingSource()
    tiled = TiledPredictor(model, source=source, halo=32)
    tiling = tiled.set_image(image)
    assert len(tiling) == 9 and source.encoder_calls == 0  # setting the image embeds nothing
    label, x, y = _click_inside(truth, tiling)
    found = tiled.predict(point_coords=[[x, y]], point_labels=[1])
    assert source.encoder_calls == 1 and not found.cut
    # The same as SAM's predictor on that window with the plane's contrast, placed in the plane.
    y0, y1, x0, x1 = found.window
    direct = SamPredictor(model)
    direct.set_image(image[y0:y1, x0:x1], intensity_range=tiled.tile_embeddings.intensity_range)
    masks, iou, _ = direct.predict(point_coords=np.array([[x - x0, y - y0]]), point_labels=np.array([1]),
                                   multimask_output=False)
    plane = np.zeros(image.shape, bool)
    found.paste(plane)
    expected = np.zeros(image.shape, bool)
    expected[y0:y1, x0:x1] = masks[0]
    assert np.array_equal(plane, expected) and found.score == pytest.approx(float(iou[0]))
    assert found.mask.shape[0] * found.mask.shape[1] < 0.05 * image.size  # a crop, not a plane
    # A second click on the same tile is decoded from the cached embedding.
    tiled.predict(point_coords=[[x + 1, y]], point_labels=[1])
    assert source.encoder_calls == 1


def test_tile_embeddings_are_read_back_from_the_store(model, scene, tmp_path):
    image, truth = scene
    store = EmbeddingStore(tmp_path / "store")
    first = TiledPredictor(model, source=EmbeddingSource(store=store), halo=32)
    _, x, y = _click_inside(truth, first.set_image(image))
    a = first.predict(point_coords=[[x, y]], point_labels=[1])
    later = EmbeddingSource(store=store)
    second = TiledPredictor(model, source=later, halo=32)
    second.set_image(image)
    b = second.predict(point_coords=[[x, y]], point_labels=[1])
    assert later.encoder_calls == 0 and later.disk_reads == 1
    assert np.array_equal(a.mask, b.mask) and a.offset == b.offset


def test_a_tile_key_never_matches_the_whole_plane_key(model, scene):
    image, _ = scene
    tiled = TiledPredictor(model, halo=32)
    tiled.set_image(image[:256, :300])
    tiles = tiled.tile_embeddings
    from napari_sam.embeddings import slice_key

    whole = slice_key(image[:256, :300], (), tiled, tiles.intensity_range)
    keys = {tiles.key(t.box) for t in tiled.tiling}
    assert len(keys) == len(tiled.tiling) == 2 and whole not in keys
    assert {k.slice_index for k in keys} == {(t.box[0], t.box[2], t.box[1], t.box[3]) for t in tiled.tiling}


def test_a_mask_cut_by_its_tile_is_decoded_again_on_a_window_centred_on_it(model):
    truth = np.zeros((600, 600), bool)
    truth[disk((300, 150), 120, shape=truth.shape)] = True  # 240 px across: wider than a tile's core
    image = truth.astype(np.uint16) * 1000
    tiled = TiledPredictor(model, halo=32)
    tiled.set_image(image)

    def oracle(tiles, window, points, labels, box, multimask_output):
        y0, y1, x0, x1 = window
        return truth[y0:y1, x0:x1].copy(), 1.0  # what a perfect model sees in this window

    tiled._decode = oracle
    found = tiled.predict(point_coords=[[150, 300]], point_labels=[1])
    assert len(found.windows) == 2 and found.windows[0] != found.window and not found.cut
    plane = found.paste(np.zeros(truth.shape, bool))
    assert np.array_equal(plane, truth)


def test_a_mask_larger_than_any_window_says_it_is_cut(model):
    image = np.ones((600, 600), np.uint16)
    image[0, 0] = 0
    tiled = TiledPredictor(model, halo=32)
    tiled.set_image(image)
    tiled._decode = lambda tiles, window, *a: (np.ones((window[1] - window[0], window[3] - window[2]), bool), 1.0)
    found = tiled.predict(point_coords=[[300, 300]], point_labels=[1])
    assert found.cut and len(found.windows) >= 2


@pytest.mark.parametrize("kwargs, message", [({}, "give a prompt"), ({"point_coords": [[700, 3]]}, "point_labels"),
                                             ({"point_coords": [[700, 3]], "point_labels": [1]}, "outside"),
                                             ({"box": [10, 10, 5, 20]}, "x0 < x1")])
def test_bad_prompts_say_what_is_wrong(model, scene, kwargs, message):
    tiled = TiledPredictor(model)
    tiled.set_image(scene[0], intensity_range=(0, 4095))
    with pytest.raises(ValueError, match=message):
        tiled.predict(**kwargs)


def test_predict_before_set_image_is_refused(model):
    with pytest.raises(ValueError, match="set_image"):
        TiledPredictor(model).predict(point_coords=[[1, 1]], point_labels=[1])


def test_a_line_of_pixels_is_refused_before_it_is_read(model):
    from tile_helpers import ReadingSpy

    spy = ReadingSpy(np.zeros((1, 100_000), np.uint16))
    with pytest.raises(ValueError, match="1 x 100000 pixels"):
        TiledPredictor(model).set_image(spy)
    assert spy.reads == []
