"""A SAM dock narrows the canvas; a view that showed the whole image must stay whole (issue: sample opened cropped)."""

import numpy as np
import pytest

from napari.components import ViewerModel

from napari_sam.widgets.view_fit import WholeImageInView, camera_of, shows_whole, whole_in_view

# napari 0.5 keeps the canvas size in a private field with no event, so the re-fit cannot hear a resize there.
_VIEWER_FIELDS = getattr(ViewerModel, "model_fields", None) or ViewerModel.__fields__
needs_canvas_events = pytest.mark.skipif(
    "canvas" not in _VIEWER_FIELDS, reason="napari 0.5 emits no event when the canvas is resized"
)


def test_whole_in_view_is_true_only_when_the_box_lies_inside_the_canvas():
    extent = np.array([[0.0, 0.0], [100.0, 200.0]])  # 100 high, 200 wide
    assert whole_in_view(extent, (50, 100), 2.0, (400, 400))  # 200 x 400 screen pixels: fits
    assert not whole_in_view(extent, (50, 100), 2.0, (400, 399))  # one screen pixel narrower
    assert not whole_in_view(extent, (50, 130), 2.0, (400, 400))  # shifted right: the left edge is cut
    assert whole_in_view(extent, (50, 100), 1.0, (100, 200))  # exactly the canvas


def set_canvas_size(viewer, hw) -> None:
    """What napari's canvas does when its widget is resized (napari >= 0.6: ``viewer.canvas``; 0.5: ``_canvas_size``)."""
    if hasattr(viewer, "canvas"):
        viewer.canvas.size = hw
    else:
        viewer._canvas_size = hw


def fitted_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 128, 256), np.uint16), scale=(3.0, 0.5, 0.5))
    set_canvas_size(viewer, (600, 900))
    viewer.reset_view()
    assert shows_whole(viewer)
    return viewer


@needs_canvas_events
def test_a_canvas_that_shrinks_under_the_whole_image_fits_it_again(make_napari_viewer):
    viewer = fitted_viewer(make_napari_viewer)
    keeper = WholeImageInView(viewer)
    zoom = camera_of(viewer).zoom
    set_canvas_size(viewer, (600, 450))  # a dock took half the width
    assert camera_of(viewer).zoom < zoom and shows_whole(viewer)
    # Growing again keeps the (now smaller) whole view: nothing is cut, so nothing changes.
    zoom = camera_of(viewer).zoom
    set_canvas_size(viewer, (600, 900))
    assert camera_of(viewer).zoom == pytest.approx(zoom)
    keeper.close()
    set_canvas_size(viewer, (600, 100))
    assert not shows_whole(viewer)  # closed: it no longer acts


@needs_canvas_events
def test_a_view_the_user_zoomed_into_is_left_alone(make_napari_viewer):
    viewer = fitted_viewer(make_napari_viewer)
    keeper = WholeImageInView(viewer)
    camera_of(viewer).zoom *= 3  # looking at a detail
    zoom, center = camera_of(viewer).zoom, tuple(camera_of(viewer).center)
    set_canvas_size(viewer, (600, 450))
    assert camera_of(viewer).zoom == pytest.approx(zoom) and tuple(camera_of(viewer).center) == pytest.approx(center)
    keeper.close()


@needs_canvas_events
def test_the_annotator_dock_keeps_the_opened_sample_whole(make_napari_viewer, qtbot, _settle_annotators):
    # What a new user does: open a sample, then the annotator from the Plugins menu.
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-sam-annotator", "cells_2d")
    qtbot.wait(50)
    viewer.reset_view()
    assert shows_whole(viewer)
    before = camera_of(viewer).zoom
    _, dock = viewer.window.add_plugin_dock_widget("napari-sam-annotator", "SAM Annotator")
    qtbot.waitUntil(lambda: camera_of(viewer).zoom != before, timeout=5000)
    qtbot.wait(50)
    assert shows_whole(viewer)
    # The sample's long name and the key help wrap or elide instead of widening the dock (it asked for 496 px).
    assert dock.image_combo.currentText() == "SAM demo: cells (generated)"
    assert dock.sizeHint().width() < 400
