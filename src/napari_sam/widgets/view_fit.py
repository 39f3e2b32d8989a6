"""Keep the whole image in view when a SAM dock takes its room from the canvas.

napari fits the view to the canvas when the first layer is added, and never
again when the canvas later shrinks. Opening a SAM dock beside an image (or the
dock growing as it fills its form) takes a third of the window's width, so a
microscopist saw their image cut at the left and right until they pressed Home.

The rule: if every layer was whole in view at the canvas's previous size and is
no longer at its new size, the view is fitted again (napari's own Home). A view
the user zoomed into was not whole before and is left as it is.
"""

from __future__ import annotations

import numpy as np

from .events import disconnect_quietly


def whole_in_view(extent: np.ndarray, center, zoom: float, canvas_hw) -> bool:
    """Whether the 2D box ``extent`` ((min_y, min_x), (max_y, max_x)) lies inside the canvas at ``center``/``zoom``."""
    half = np.asarray(canvas_hw, dtype=float) / (2.0 * zoom)
    centre = np.asarray(center, dtype=float)[-2:]
    slack = 1e-6 * max(1.0, float(np.abs(extent).max()))
    return bool(np.all(extent[0] >= centre - half - slack) and np.all(extent[1] <= centre + half + slack))


def shows_whole(viewer, canvas_hw=None) -> bool:
    """Whether every layer lies inside the canvas (of size ``canvas_hw``, default its own) at the camera's view."""
    size = _canvas_size(viewer) if canvas_hw is None else tuple(canvas_hw)
    camera = camera_of(viewer)
    if len(viewer.layers) == 0 or viewer.dims.ndisplay != 2 or size is None or camera.zoom <= 0:
        return False
    displayed = list(viewer.dims.displayed)
    world = np.asarray(viewer.layers.extent.world, dtype=float)[:, displayed]
    step = np.asarray(viewer.layers.extent.step, dtype=float)[displayed]
    extent = np.stack([world[0] - step / 2, world[1] + step / 2])  # pixel edges, as napari draws them
    return whole_in_view(extent, camera.center, camera.zoom, size)


class WholeImageInView:
    """Re-fits ``viewer`` when its canvas shrinks under a view that showed everything (2D display only).

    A resize leaves napari's camera as it was, so "whole before" is the camera now at the previous size:
    only that size is kept, and nothing runs while the user pans or zooms.
    """

    def __init__(self, viewer) -> None:
        self.viewer = viewer
        self._resized = _canvas_resize_emitter(viewer)
        self._size = _canvas_size(viewer)
        if self._resized is not None:
            self._resized.connect(self._on_canvas_resized)

    def _on_canvas_resized(self, event=None) -> None:
        before, self._size = self._size, _canvas_size(self.viewer)
        if before is not None and shows_whole(self.viewer, before) and not shows_whole(self.viewer):
            self.viewer.reset_view()

    def close(self) -> None:
        if self._resized is not None:
            disconnect_quietly(self._resized, self._on_canvas_resized)


def camera_of(viewer):
    """The viewer's camera: ``viewer.scene.camera`` (napari >= 0.9), ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _canvas_size(viewer):
    """The canvas's (height, width) in screen pixels: ``viewer.canvas.size`` (recent napari), ``_canvas_size`` before."""
    canvas = getattr(viewer, "canvas", None)
    size = getattr(canvas, "size", None) if canvas is not None else getattr(viewer, "_canvas_size", None)
    return None if size is None else tuple(size)


def _canvas_resize_emitter(viewer):
    """``viewer.canvas.events.size`` (recent napari). napari 0.5 keeps the size in a private field with no event,
    so there the re-fit is off and the view behaves as napari's own."""
    canvas = getattr(viewer, "canvas", None)
    if canvas is not None and hasattr(canvas, "events"):
        return getattr(canvas.events, "size", None)
    return None
