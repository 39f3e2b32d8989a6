"""TiledPredictor.predict_candidates: the annotator's three candidates on a large plane."""

import numpy as np
import pytest
import torch
from skimage.draw import disk

from napari_sam.embeddings import EmbeddingSource
from napari_sam.model import load_model
from napari_sam.tiles import TiledPredictor
from napari_sam.tiles.reading import plane_of


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return load_model("demo")


def test_three_candidates_come_from_the_window_where_the_best_is_whole(model):
    truth = np.zeros((600, 600), bool)
    truth[disk((300, 150), 120, shape=truth.shape)] = True  # wider than a tile's core
    tiled = TiledPredictor(model, halo=32)
    tiled.set_image(truth.astype(np.uint16) * 1000)
    seen = []

    def oracle(tiles, window, points, labels, box):
        seen.append(window)
        y0, y1, x0, x1 = window
        whole = truth[y0:y1, x0:x1]
        small = np.zeros_like(whole)
        small[whole.shape[0] // 2, whole.shape[1] // 2] = True
        return np.stack([small, whole, small]), np.array([0.2, 0.9, 0.4]), np.zeros((3, 64, 64))

    tiled._decode_three = oracle
    found = tiled.predict_candidates(point_coords=[[150, 300]], point_labels=[1])
    assert found.windows == seen and len(seen) == 2 and found.window == seen[-1] and not found.cut
    assert found.masks.shape[0] == 3 and found.iou.tolist() == [0.2, 0.9, 0.4]
    plane = np.zeros(truth.shape, bool)
    (y, x), (h, w) = found.offset, found.masks.shape[1:]
    plane[y:y + h, x:x + w] = found.masks[1]
    assert np.array_equal(plane, truth)  # the best candidate, whole, in plane coordinates


def test_real_candidates_embed_one_tile_and_match_predict_on_that_window(model):
    image = np.full((600, 600), 20, np.uint8)
    image[disk((300, 300), 14, shape=image.shape)] = 220
    source = EmbeddingSource()
    tiled = TiledPredictor(model, source=source, halo=32)
    tiled.set_image(image)
    found = tiled.predict_candidates(point_coords=[[300, 300]], point_labels=[1])
    assert source.encoder_calls == 1 and found.masks.shape[0] == 3 and found.low_res.shape[0] == 3
    best = tiled.predict(point_coords=[[300, 300]], point_labels=[1], multimask_output=True)
    k = int(np.argmax(found.iou))
    plane = np.zeros(image.shape, bool)
    (y, x), (h, w) = found.offset, found.masks.shape[1:]
    plane[y:y + h, x:x + w] = found.masks[k]
    assert np.array_equal(best.paste(np.zeros(image.shape, bool)), plane) and source.encoder_calls == 1


def test_one_plane_of_a_stack_is_read_window_by_window():
    stack = np.arange(3 * 20 * 30).reshape(3, 20, 30)
    plane = plane_of(stack, (2,))
    assert plane.shape == (20, 30) and plane.dtype == stack.dtype
    assert np.array_equal(plane[5:9, 10:20], stack[2, 5:9, 10:20])
    assert plane_of(stack) is stack
