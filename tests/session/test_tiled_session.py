"""The annotator on planes larger than twice the model's input: clicks embed only the tiles they need.

The demo model (256 px input) makes a 3000 x 3000 plane a large one: 23 x 23
tiles. Encoder runs are counted by the embedding source, as the other
session tests count them.
"""

import numpy as np
import pytest
import torch
from fakes import ManualLoop
from skimage.draw import disk

from napari_sam.commit import apply_change, undo_change
from napari_sam.model import load_model
from napari_sam.prompts import Prompt
from napari_sam.session import AnnotationSession, EmbeddingSource, ImagePlanes, SamEngine, Workspace
from napari_sam.tiles import TiledPredictor
from napari_sam.tiles.reading import BAND_PIXELS
from napari_sam.volume.store import EmbeddingStore

SIDE = 3000


@pytest.fixture(scope="module")
def engine():
    torch.set_num_threads(2)
    return SamEngine(load_model("demo"), precision="fp32")


@pytest.fixture(scope="module")
def slide():
    """A dark 3000 x 3000 plane with a bright nucleus in the middle of the first tile."""
    image = np.full((SIDE, SIDE), 20, np.uint8)
    image[disk((120, 120), 16, shape=image.shape)] = 220
    return image


def open_session(data, engine, source):
    loop = ManualLoop()
    session = AnnotationSession(ImagePlanes(data, name="slide"), Workspace(embeddings=source), loop, prefetch=False)
    session.set_engine(engine)
    session.show_slice((0,) * (np.ndim(data) - 2))
    loop.run_until(lambda: session.embedding_ready and session.is_idle(), timeout=60)
    return session, loop


def click(session, loop, x, y, slice_index=()):
    session.set_prompt(slice_index, Prompt.make([[x, y]], [1]))
    loop.run_until(lambda: session.candidates() is not None and session.is_idle(), timeout=120)
    return session.candidates()


def test_a_click_embeds_one_tile_a_second_none_and_a_reopened_image_none(engine, slide, tmp_path):
    store = EmbeddingStore(tmp_path / "store")
    source = EmbeddingSource(store=store)
    session, loop = open_session(slide, engine, source)
    assert session.tiled is not None and session.embedding is None and source.encoder_calls == 0
    assert "3000 x 3000 px, handled by tiles of 256 px (halo 64 px)" in session.status.text
    cands = click(session, loop, 120, 120)
    assert source.encoder_calls == 1 and len(store) == 1
    # Three candidates with their IoU, as on a small image, but crops of one box in the plane.
    assert cands.count == 3 and cands.iou.shape == (3,) and cands.offset is not None
    assert cands.masks.shape[1] * cands.masks.shape[2] < 256 * 256
    assert "decoded on the window rows 0-256, columns 0-256" in session.status.text
    click(session, loop, 125, 118)  # the same tile again
    assert source.encoder_calls == 1
    # Another session on the same image and store: the tile is read back from disk.
    later = EmbeddingSource(store=store)
    again, loop2 = open_session(slide, engine, later)
    click(again, loop2, 120, 120)
    assert later.encoder_calls == 0 and later.disk_reads == 1


def test_a_plane_of_ordinary_size_keeps_its_one_embedding(engine):
    image = np.full((500, 500), 20, np.uint8)  # not above twice the 256 px input
    source = EmbeddingSource()
    session, loop = open_session(image, engine, source)
    assert session.tiled is None and session.embedding is not None and source.encoder_calls == 1
    cands = click(session, loop, 250, 250)
    assert cands.offset is None and cands.masks.shape[1:] == (500, 500)


def test_a_mask_across_tile_borders_is_committed_whole_and_undone_keeping_other_labels(engine, monkeypatch):
    truth = np.zeros((SIDE, SIDE), bool)
    truth[disk((700, 1500), 150, shape=truth.shape)] = True  # 300 px across: no tile holds it
    image = truth.astype(np.uint16) * 1000 + 50

    def oracle(self, tiles, window, points, labels, box):
        y0, y1, x0, x1 = window
        whole = truth[y0:y1, x0:x1]  # what a perfect model sees in this window
        eroded = np.zeros_like(whole)
        eroded[1:-1, 1:-1] = whole[1:-1, 1:-1] & whole[:-2, 1:-1] & whole[2:, 1:-1]
        return np.stack([eroded, whole, np.zeros_like(whole)]), np.array([0.5, 0.9, 0.1]), np.zeros((3, 64, 64))

    monkeypatch.setattr(TiledPredictor, "_decode_three", oracle)
    session, loop = open_session(image, engine, EmbeddingSource())
    cands = click(session, loop, 1500, 700)
    rows, cols = np.flatnonzero(truth.any(1)), np.flatnonzero(truth.any(0))
    assert cands.selected == 1 and cands.offset == (rows[0], cols[0])
    assert cands.masks.shape == (3, rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    assert "may be cut" not in session.status.text

    labels = np.zeros((SIDE, SIDE), np.uint32)
    labels[690:710, 1340:1360] = 4  # another object, partly inside the new one: it keeps its pixels
    labels[0:5, 0:5] = 9
    before = labels.copy()
    change = session.plan_commit(labels)
    apply_change(labels, change)
    assert change.object_id == 10
    assert np.array_equal(labels == 10, truth & (before == 0))
    assert (labels == 4).sum() == 400 and (labels == 9).sum() == 25
    undo_change(labels, change)
    assert np.array_equal(labels, before)


def test_editing_an_object_on_a_tiled_plane_replaces_it_through_its_box(engine, monkeypatch):
    truth = np.zeros((SIDE, SIDE), bool)
    truth[disk((1000, 1000), 40, shape=truth.shape)] = True
    monkeypatch.setattr(TiledPredictor, "_decode_three", lambda self, tiles, window, points, labels, box: (
        np.stack([truth[window[0]:window[1], window[2]:window[3]]] * 3), np.array([0.3, 0.8, 0.4]),
        np.zeros((3, 64, 64))))
    session, loop = open_session(np.zeros((SIDE, SIDE), np.uint8), engine, EmbeddingSource())
    labels = np.zeros((SIDE, SIDE), np.uint32)
    labels[950:1000, 950:1100] = 3  # a wrong drawing of the object, partly outside its true box
    session.start_edit(labels, 3)
    loop.run_until(lambda: session.candidates() is not None and session.is_idle(), timeout=60)
    change = session.plan_commit(labels)
    apply_change(labels, change)
    assert change.object_id == 3 and np.array_equal(labels == 3, truth)


class CountingArray:
    """A lazy image (as zarr or dask would be) that counts what is read and refuses to be read whole."""

    def __init__(self, array):
        self._array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.reads = []  # pixels of each read

    def __getitem__(self, key):
        out = self._array[key]
        self.reads.append(int(np.size(out)))
        return out

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole image was read")


def test_a_lazy_image_is_read_tile_by_tile_never_whole(engine, slide):
    lazy = CountingArray(slide)  # 8-bit: no contrast to measure, only the tiles are read
    source = EmbeddingSource()
    session, loop = open_session(lazy, engine, source)
    assert lazy.reads == []
    click(session, loop, 120, 120)
    assert source.encoder_calls == 1 and sum(lazy.reads) <= 2 * 256 * 256


def test_a_lazy_16_bit_stack_is_read_in_bands_for_its_contrast_and_in_tiles_for_clicks(engine):
    stack = np.full((2, SIDE, SIDE), 100, np.uint16)
    stack[1][disk((1500, 1500), 16, shape=(SIDE, SIDE))] = 3000
    lazy = CountingArray(stack)
    source = EmbeddingSource()
    session, loop = open_session(lazy, engine, source)
    session.show_slice((1,))
    loop.run_until(lambda: session.embedding_ready and session.is_idle(), timeout=60)
    contrast = list(lazy.reads)
    assert max(contrast) <= BAND_PIXELS and sum(contrast) <= 2 * SIDE * SIDE  # slices 0 and 1, once each
    click(session, loop, 1500, 1500, (1,))
    clicks = lazy.reads[len(contrast):]
    assert source.encoder_calls == 1 and sum(clicks) <= 2 * 256 * 256
