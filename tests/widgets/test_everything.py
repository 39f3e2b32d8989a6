"""The "SAM Everything" dock with the shipped demo model on generated nuclei."""

from types import SimpleNamespace

import numpy as np
import pytest

from napari_sam.synthetic import make_nuclei_2d, make_nuclei_3d
from napari_sam.widgets import everything as E

TIMEOUT_MS = 60000


def find(qtbot, widget, scope=None):
    assert widget.find(scope), widget.status.text()
    qtbot.waitUntil(widget.is_idle, timeout=TIMEOUT_MS)


def ids(layer):
    return set(np.unique(layer.data).tolist()) - {0}


def test_find_refilter_accept_and_undo(make_everything, qtbot, everything_errors):
    image, truth = make_nuclei_2d((256, 256), n_objects=(10, 12), seed=3)
    viewer, widget = make_everything(image)
    assert widget.form.settings()["points_per_side"] == 24  # the demo model's recommended settings
    labels = widget.link.labels
    painted = truth == np.unique(truth[truth > 0])[0]
    labels.data_setitem(np.nonzero(painted), 9)  # drawn by hand first
    find(qtbot, widget)
    layer = viewer.layers["SAM proposals"]
    found = ids(layer)
    assert len(found) > 5 and everything_errors == []
    assert (layer.data[painted] > 0).mean() < 0.5  # the object drawn by hand is not proposed again
    # The recommended settings without a row in the form were applied too.
    used = widget.proposals.generator.settings
    assert (used.merge_duplicates_iou, used.gap_fill_iou_thresh, used.nms_score) == (0.8, 0.7, "stability_score")

    widget.form.set(pred_iou_thresh=0.97)  # the sliders re-filter once they rest, without the model
    qtbot.waitUntil(lambda: len(ids(layer)) < len(found), timeout=5000)
    widget.form.set(pred_iou_thresh=0.6)
    qtbot.waitUntil(lambda: ids(layer) == found, timeout=5000)
    assert (layer.data[painted] > 0).mean() < 0.5  # re-filtered proposals are drawn off it too

    before = np.array(labels.data)
    assert widget.accept()
    assert set(np.unique(labels.data)) == {0, 9, *range(10, 10 + len(found))}
    assert np.all(labels.data[painted] == 9) and ids(layer) == set()
    labels.undo()  # one undo step takes every accepted object back
    assert np.array_equal(labels.data, before)


def test_click_accepts_one_and_alt_click_deletes_one(make_everything, qtbot, everything_errors):
    image, _ = make_nuclei_2d((256, 256), n_objects=(8, 10), seed=4)
    viewer, widget = make_everything(image)
    find(qtbot, widget)
    layer = viewer.layers["SAM proposals"]
    first, second = sorted(ids(layer))[:2]

    def click(where, modifiers=()):
        y, x = np.argwhere(where)[0]
        event = SimpleNamespace(type="mouse_press", button=1, position=(float(y), float(x)), view_direction=None,
                                dims_displayed=[0, 1], modifiers=set(modifiers))
        widget.view._on_click(layer, event)

    at_first, at_second = layer.data == first, layer.data == second
    click(at_first)
    assert np.all(widget.link.labels.data[at_first] == 1) and not layer.data[at_first].any()
    assert at_second[layer.data == layer.data[at_second][0]].all()  # the same proposal, whatever its id now
    click(at_second, ["Alt"])
    assert not widget.link.labels.data[at_second].any()
    assert all(at_second[layer.data == i].mean() < 0.5 for i in ids(layer))  # no proposal mostly on the deleted one
    assert everything_errors == []


def test_a_stack_is_found_slice_by_slice_and_linked(make_everything, qtbot, everything_errors):
    stack, _ = make_nuclei_3d((4, 128, 128), n_objects=(3, 4), seed=5, z_step=1.0, radius_range=(12.0, 18.0))
    viewer, widget = make_everything(stack)
    find(qtbot, widget, E.STACK)
    layer = viewer.layers["SAM proposals"]
    spans = [len(np.unique(np.nonzero(layer.data == i)[0])) for i in ids(layer)]
    assert spans and max(spans) >= 2 and everything_errors == []
    shown = np.array(layer.data)
    assert widget.accept()
    assert np.array_equal(widget.link.labels.data > 0, shown > 0)
    assert len(np.unique(widget.link.labels.data)) - 1 == len(spans)  # one object per linked proposal


def test_what_cannot_be_done_is_said(make_everything, qtbot, everything_errors):
    image, _ = make_nuclei_2d((128, 128), n_objects=(3, 4), seed=6)
    viewer, widget = make_everything(np.stack([image, image]))
    assert not widget.accept() and "no proposals" in everything_errors[-1]
    find(qtbot, widget, E.PLANE)
    viewer.dims.set_current_step(0, 1)
    qtbot.waitUntil(lambda: widget.link.current_slice() == (1,), timeout=5000)
    assert not widget.accept() and "another slice" in everything_errors[-1]
    assert not widget.link.labels.data.any()

    flat = make_everything(np.zeros((64, 64), np.uint8), name="blank")[1]
    assert not flat.find(E.STACK) and "not a stack" in everything_errors[-1]
    find(qtbot, flat, E.PLANE)
    assert "constant" in everything_errors[-1]
