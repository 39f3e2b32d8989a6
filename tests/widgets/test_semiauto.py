"""SAM Everything's semi-automatic mode: K accepts the confident proposals, gaps, the counter, series images."""

import numpy as np
import pytest

from napari_sam.session.tally import SERIES_KEY
from napari_sam.synthetic import make_nuclei_2d, make_nuclei_3d
from napari_sam.widgets import everything as E
from napari_sam.widgets.proposal_view import CONFIDENT_COLOURS, UNSURE_COLOURS
from napari_sam.widgets.semiauto_rows import ACCEPT_KEY

TIMEOUT_MS = 60000


def ids(data):
    return set(np.unique(data).tolist()) - {0}


def camera(viewer):
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # moved in napari 0.9


def hex_of(layer, i):
    return "#" + "".join(f"{round(v * 255):02x}" for v in layer.colormap.map(np.array([i]))[0][:3])


def test_k_accepts_the_confident_proposals_in_one_undo_step(make_everything, qtbot, everything_errors):
    image, truth = make_nuclei_2d((256, 256), n_objects=(10, 12), seed=3)
    viewer, widget = make_everything(image)
    assert any(str(k).lower() == ACCEPT_KEY for k in viewer.keymap)  # bound on the viewer: works on any layer
    assert widget.find(), widget.status.text()
    qtbot.waitUntil(widget.is_idle, timeout=TIMEOUT_MS)
    layer = viewer.layers["SAM proposals"]
    sure, unsure = widget.proposals.confident_ids, widget.proposals.unsure_ids
    assert sure and unsure and everything_errors == []
    assert all(hex_of(layer, i) in CONFIDENT_COLOURS for i in sure)  # told apart by colour
    assert all(hex_of(layer, i) in UNSURE_COLOURS for i in unsure)
    labels = widget.link.labels
    mine = truth == np.unique(truth[truth > 0])[-1]
    labels.data_setitem(np.nonzero(mine), 50)  # the user's own object, drawn after the search
    before = np.array(labels.data)
    shown = np.array(layer.data)
    widget.semi._on_key(viewer)  # K
    assert len(ids(labels.data)) - 1 <= len(sure) and len(ids(labels.data)) > 1
    assert np.all(labels.data[mine] == 50)  # never overwritten
    new = labels.data != before
    assert set(np.unique(shown[new])) <= set(sure)  # only confident proposals came in
    assert ids(layer.data) and set(np.unique(layer.data[np.isin(shown, unsure)])) - {0}  # the unsure ones stay
    n = len(ids(labels.data)) - 1
    assert widget.semi.counter.text() == f"{n + 1} objects on this image ({n} from proposals)"
    labels.undo()  # one step takes them all back
    assert np.array_equal(labels.data, before)
    widget.discard()
    widget.semi._on_key(viewer)  # nothing to accept: said so, nothing changed
    assert "no proposals" in everything_errors[-1] and np.array_equal(labels.data, before)


def test_next_gap_shows_the_missing_nucleus_of_a_stack(make_everything, qtbot, everything_errors):
    stack, truth = make_nuclei_3d((8, 128, 128), n_objects=(6, 8), seed=1)
    viewer, widget = make_everything(stack, scale=(2.0, 0.5, 0.5))
    missing = np.unique(truth[truth > 0])[1]
    widget.link.labels.data = np.where(truth == missing, 0, truth).astype(np.uint32)
    widget.scope_combo.setCurrentText(E.STACK)
    assert widget.semi.show_gaps() >= 1 and everything_errors == []
    gaps = viewer.layers["SAM gaps"]
    assert (truth[(gaps.data == 1) & (truth > 0)] == missing).mean() > 0.95
    gap = widget.semi.next_gap()
    z, y, x = np.argwhere(truth == missing).mean(axis=0)
    assert abs(viewer.dims.point[0] - z * 2.0) <= 2.0 * 1.5  # on the nucleus's slices ...
    assert np.allclose(camera(viewer).center[-2:], (y * 0.5, x * 0.5), atol=3.0)  # ... and centred on it
    assert gap.rank == 1 and "Gap 1" in widget.status.text()
    widget.link.labels.data = truth.astype(np.uint32)  # the user drew it: Next gap skips it from now on
    assert all(getattr(widget.semi.next_gap(), "rank", None) != 1 for _ in range(len(widget.semi.gaps) + 1))
    widget.link.labels.data = np.where(gaps.data > 0, 99, truth).astype(np.uint32)  # every gap filled
    assert widget.semi.next_gap() is None and "No gaps left" in widget.status.text()


def test_a_new_series_image_is_proposed_at_once_and_the_series_is_counted(make_everything, qtbot, everything_errors):
    first, _ = make_nuclei_2d((128, 128), n_objects=(4, 6), seed=11)
    viewer, widget = make_everything(first)
    widget.semi.series_check.setChecked(True)
    image, _ = make_nuclei_2d((128, 128), n_objects=(4, 6), seed=12)
    layer = viewer.add_image(image, name="image 2 of 5", metadata={SERIES_KEY: {"done": 1, "total": 5}})
    widget.hub.series_image_opened.emit(layer)  # what the series dock sends
    qtbot.waitUntil(lambda: widget.proposals is not None and widget.proposals.ids and widget.is_idle(),
                    timeout=TIMEOUT_MS)
    assert widget.link.image is layer and widget.proposals_of is widget.session and everything_errors == []
    assert widget.semi.counter.text() == "0 objects on this image; 1 of 5 images done in the series"
    widget.semi.series_check.setChecked(False)  # unticked: a new series image is only opened
    other = viewer.add_image(first, name="image 3 of 5")
    widget.hub.series_image_opened.emit(other)
    assert widget.link.image is layer
