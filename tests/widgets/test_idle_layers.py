"""Our empty layers stay hidden while unused, so napari does not re-slice them on every slider step."""

import numpy as np
from test_annotator import settle, start


def box_on(z):
    """A rectangle on slice ``z`` (napari's four corners)."""
    return np.array([[z, 10, 12], [z, 10, 40], [z, 30, 40], [z, 30, 12]])


def _stack():
    return np.random.default_rng(0).integers(0, 4000, (4, 40, 50)).astype(np.uint16)


def test_the_boxes_layer_shows_when_selected_or_holding_a_box(make_napari_viewer, qtbot, stub_factory):
    viewer, image, w = start(make_napari_viewer, qtbot, _stack(), stub_factory)
    selection = viewer.layers.selection
    assert selection.active is w.points and not w.boxes.visible  # a fresh start: clicking points
    assert not any(c.visible for c in w.candidates)  # nothing to show yet

    selection.active = w.boxes  # the user picks the layer to draw a box
    assert w.boxes.visible
    selection.active = w.points
    assert not w.boxes.visible

    w.boxes.add_rectangles(box_on(viewer.dims.current_step[0]))  # a box drawn (here by script) is shown
    assert w.boxes.visible
    cands = settle(qtbot, w)
    assert cands is not None and w.candidates[cands.selected].visible
    w.commit()  # clears the slice's prompts: the layer is empty and not selected again
    assert len(w.boxes.data) == 0 and not w.boxes.visible


def test_the_eye_icon_is_the_users_choice(make_napari_viewer, qtbot, stub_factory):
    viewer, image, w = start(make_napari_viewer, qtbot, _stack(), stub_factory)
    selection = viewer.layers.selection
    w.boxes.visible = True  # the user opens the eye of the empty layer
    selection.active = w.boxes
    selection.active = w.points
    assert w.boxes.visible  # left as they chose

    selection.active = w.boxes
    w.boxes.add_rectangles(box_on(viewer.dims.current_step[0]))
    w.boxes.visible = False  # and closes it with a box in it
    selection.active = w.points
    selection.active = w.boxes
    assert not w.boxes.visible


def test_closing_the_dock_shows_a_boxes_layer_it_hid(make_napari_viewer, qtbot, stub_factory):
    viewer, image, w = start(make_napari_viewer, qtbot, _stack(), stub_factory)
    boxes = w.boxes
    assert not boxes.visible
    w.shutdown()
    assert boxes.visible
    viewer.layers.selection.active = image
    assert boxes.visible  # no longer looked after


def test_the_boxes_layer_shows_when_selected_in_a_dock_napari_opened(make_napari_viewer, qtbot, _settle_annotators):
    # napari hands a dock it opens a proxy of the viewer, whose layers are proxies of ours.
    viewer = make_napari_viewer()
    image = viewer.add_image(_stack())
    _dock, w = viewer.window.add_plugin_dock_widget("napari-sam-annotator", "SAM Annotator")
    w.set_image(image)
    assert not w.boxes.visible
    viewer.layers.selection.active = w.boxes
    assert w.boxes.visible
    viewer.layers.selection.active = image
    assert not w.boxes.visible
