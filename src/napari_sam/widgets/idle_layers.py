"""Our empty "SAM boxes" layer stays hidden while nobody draws on it.

napari re-slices every visible layer on each step of the z slider. An empty
Shapes layer is not free there: its mesh is set anew and vispy builds its
shader programs again on the next draw. Under a software OpenGL (Mesa's
llvmpipe, 2-core AMD EPYC) that was 20-30 ms of each slider step (median
step 70-90 ms with the layer shown, 48-54 ms with it hidden), most of the
time the annotator leaves for napari. So the boxes layer is hidden while it
holds no box and is not the selected layer, and shown again as soon as it is
selected (to draw a box) or gets a box. A user who shows or hides it with
its eye icon decides from then on: the keeper stops acting.
"""

from __future__ import annotations

from .events import disconnect_quietly


class HiddenWhileEmpty:
    """Hides ``layer`` while it is empty and not the viewer's selected layer (see the module's docstring)."""

    def __init__(self, viewer, layer) -> None:
        self.viewer, self.layer = viewer, layer
        # While acting, only this keeper changes the layer's visibility (any other change ends the acting),
        # so "hidden by us" is simply "acting and hidden".
        self.acting = layer.visible  # a layer the user already hid is theirs
        self._setting = False
        layer.events.data.connect(self.update)
        layer.events.visible.connect(self._on_visible)
        viewer.layers.selection.events.active.connect(self.update)
        self.update()

    def _needed(self) -> bool:
        # ==, not `is`: a dock napari opens gets a proxy of the viewer, whose layers are proxies
        # that compare equal to the layer they wrap.
        return len(self.layer.data) > 0 or self.viewer.layers.selection.active == self.layer

    def update(self, event=None) -> None:
        if not self.acting:
            return
        needed = self._needed()
        if needed != self.layer.visible:
            self._set_visible(needed)

    def _set_visible(self, visible: bool) -> None:
        self._setting = True
        try:
            self.layer.visible = visible
        finally:
            self._setting = False

    def _on_visible(self, event=None) -> None:
        if not self._setting:  # the user's eye icon (or their script): their choice from now on
            self.acting = False

    def close(self) -> None:
        """Stop acting; a layer we hid is shown again (it is the user's to see once the dock is gone)."""
        disconnect_quietly(self.layer.events.data, self.update)
        disconnect_quietly(self.layer.events.visible, self._on_visible)
        disconnect_quietly(self.viewer.layers.selection.events.active, self.update)
        if self.acting and not self.layer.visible:
            self._set_visible(True)
        self.acting = False
