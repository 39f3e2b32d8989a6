"""The annotator on a large multiscale, dask-backed image: a click embeds one tile, its candidate is committed whole."""

import numpy as np
import pytest
from skimage.draw import disk

from napari_sam.widgets.annotator import AnnotatorWidget

da = pytest.importorskip("dask.array")

TIMEOUT_MS = 120_000


def test_a_click_on_a_large_dask_image_embeds_one_tile_and_commits_its_candidate(make_napari_viewer, qtbot):
    import torch

    from napari_sam.model import load_model
    from napari_sam.session import SamEngine

    torch.set_num_threads(2)
    engine = SamEngine(load_model("demo"), precision="fp32")
    plane = np.full((3000, 3000), 20, np.uint8)
    plane[disk((1500, 1500), 16, shape=plane.shape)] = 220
    level0 = da.from_array(plane, chunks=512)
    viewer = make_napari_viewer()
    image = viewer.add_image([level0, level0[::4, ::4]], multiscale=True, name="slide")
    widget = AnnotatorWidget(viewer, engine_factory=lambda name, device, precision: engine, autoload=False)
    viewer.window.add_dock_widget(widget, name="SAM Annotator")
    widget.set_image(image)
    widget.load_model("demo")
    qtbot.waitUntil(lambda: widget.session is not None and widget.session.embedding_ready and widget.is_idle(),
                    timeout=TIMEOUT_MS)
    assert "handled by tiles of 256 px (halo 64 px)" in widget.status.text()
    source = widget.session.workspace.embeddings
    calls = source.encoder_calls

    widget.points.add([1500, 1500])  # (row, column)
    qtbot.waitUntil(lambda: widget.current_candidates() is not None and widget.is_idle(), timeout=TIMEOUT_MS)
    qtbot.wait(1)
    cands = widget.current_candidates()
    assert source.encoder_calls - calls == 1 and cands.count == 3 and cands.offset is not None
    shown = np.asarray(widget.candidates[cands.selected].data).reshape(3000, 3000) > 0
    (y, x), (h, w) = cands.offset, cands.mask.shape
    assert shown.any() and not shown[:y].any() and not shown[y + h:].any()  # only the box is drawn
    assert np.array_equal(shown[y:y + h, x:x + w], cands.mask)

    change = widget.commit()
    assert change.object_id == 1 and widget.labels.data[1500, 1500] == 1
    assert (widget.labels.data == 1).sum() == cands.mask.sum()
    widget.labels.undo()
    assert widget.labels.data.max() == 0
    qtbot.waitUntil(widget.is_idle, timeout=TIMEOUT_MS)
