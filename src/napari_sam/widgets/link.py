"""The napari side of one annotation session: its layers, keys and the viewer's slider.

An :class:`ImageLink` ties an image layer's :class:`~napari_sam.session.AnnotationSession`
to napari: it finds or creates the named layers (``layers.py``), passes the
slice shown and the prompts placed to the session, draws the candidates the
session reports, and carries out the user's commands (commit, clear, edit,
pick a candidate) on the layers. Every dock working on the same image uses
the same link (see ``hub.py``), so they show one state.
"""

from __future__ import annotations

import numpy as np
from psygnal import Signal
from qtpy.QtCore import QTimer

from ..session import AnnotationSession, ImagePlanes
from . import candidate_layers
from . import layers as L
from . import prompt_layers as P
from .events import disconnect_quietly
from .idle_layers import HiddenWhileEmpty


def planes_of(layer, axis_labels=None) -> ImagePlanes:
    data = layer.data[0] if layer.multiscale else layer.data
    return ImagePlanes(data, rgb=bool(layer.rgb), name=layer.name, axis_labels=axis_labels)


class ImageLink:
    """One image layer, its session and its SAM layers."""

    buttons_changed = Signal(object)  # texts of the three candidate buttons, after each drawing
    sign_changed = Signal(bool)  # new points are negative (True) or positive

    def __init__(self, viewer, image, workspace, post) -> None:
        self.viewer, self.image = viewer, image
        lead = len(L.plane_shape(image)[0])
        labels = list(viewer.dims.axis_labels)[-image.ndim:][:lead] if lead else None
        if labels is not None and all(str(lbl).isdigit() or str(lbl).startswith("-") for lbl in labels):
            labels = None  # napari's default labels are axis numbers: say "slice 3" instead
        self.session = AnnotationSession(planes_of(image, labels), workspace, post)
        self.negative_mode = False
        self.closed = False
        self._shift_click = False
        self._muted = False
        self._bound: list = []
        self._slice_timer = QTimer()
        self._slice_timer.setSingleShot(True)
        self._slice_timer.setInterval(0)
        self._slice_timer.timeout.connect(self._show_current_slice)
        new_points = not L.has_layer(viewer, "points", image)
        active = viewer.layers.selection.active
        self.labels = L.labels_layer(viewer, image)
        self.candidates = L.candidate_layers(viewer, image)
        self.boxes = L.boxes_layer(viewer, image)
        self.points = L.points_layer(viewer, image)
        for layer in (self.points, self.boxes, *self.candidates):
            self._bind_keys(layer, digits=True, edit=True)
        self._bind_keys(self.labels, digits=False, edit=False)  # E is the labels layer's eraser
        for layer in (self.points, self.boxes):
            layer.events.data.connect(self._on_prompt_layer_changed)
        self.points.mouse_drag_callbacks.insert(0, self._on_points_press)  # before napari adds the point
        self.points.feature_defaults = {L.SIGN: "positive"}
        image.events.data.connect(self._on_image_data)
        viewer.dims.events.current_step.connect(self._on_dims)
        viewer.dims.events.ndisplay.connect(self._on_dims)
        self.session.candidates_changed.connect(self._on_candidates)
        self.session.slice_changed.connect(lambda s: self._draw())
        if new_points:  # a fresh start: ready to click on the image
            self.points.mode = "add"
            viewer.layers.selection.active = self.points
        elif active is not None and active in viewer.layers:
            viewer.layers.selection.active = active
        self._boxes_shown = HiddenWhileEmpty(viewer, self.boxes)
        self._show_current_slice()

    # ------------------------------------------------------------------ keys
    def _bind_keys(self, layer, digits: bool, edit: bool) -> None:
        """Our keys on our layers. napari looks keys up on the selected layer first, then on the viewer."""
        bindings = {"c": lambda *_: self.commit(), "Shift-C": lambda *_: self.clear(), "t": lambda *_: self.toggle_sign()}
        if edit:
            bindings["e"] = lambda *_: self.edit_label()
        if digits:
            for k in range(3):
                bindings[str(k + 1)] = lambda *_, k=k: self.select(k)
        for key, func in bindings.items():
            try:
                layer.bind_key(key, func, overwrite=True)
            except (TypeError, ValueError):  # older napari: no overwrite argument
                layer.bind_key(key, func)
        self._bound.append((layer, list(bindings)))

    # ------------------------------------------------------------------ the slice shown
    def current_slice(self) -> tuple[int, ...]:
        """Indices of the image's leading axes at the viewer's current position."""
        lead, _ = L.plane_shape(self.image)
        if not lead:
            return ()
        pos = np.asarray(self.image.world_to_data(self.viewer.dims.point), dtype=float)[: len(lead)]
        return tuple(int(np.clip(np.round(p), 0, n - 1)) for p, n in zip(pos, lead))

    def region(self, axis: int | None = None) -> tuple:
        """The index of the slice shown in the image (and its labels), or with ``axis`` of the stack through it:
        that axis whole, the other leading axes as shown."""
        here = self.current_slice()
        lead = tuple(slice(None) if k == axis else i for k, i in enumerate(here))
        return (*lead, slice(None), slice(None))

    def plane_is_displayed(self) -> bool:
        dims = self.viewer.dims
        return dims.ndisplay == 2 and tuple(dims.displayed) == (dims.ndim - 2, dims.ndim - 1)

    def _on_dims(self, event=None) -> None:
        # Deferred to the event loop: a burst of slider steps is handled once, after napari drew them.
        if not self.closed:
            self._slice_timer.start()

    def _show_current_slice(self) -> None:
        if self.closed:
            return
        if not self.plane_is_displayed():
            self.session.say("SAM works on the plane of the last two axes: switch to the 2D view with those axes shown.",
                             "warning")
            return
        self.session.show_slice(self.current_slice())
        self.refresh_prompt()  # points placed on this slice before its change was handled

    def _on_image_data(self, event=None) -> None:
        self.session.planes_changed(planes_of(self.image, self.session.planes.axis_labels))

    # ------------------------------------------------------------------ prompts
    def _on_points_press(self, layer, event) -> None:
        self._shift_click = P.shift_held(event)

    def _on_prompt_layer_changed(self, event=None) -> None:
        action = str(getattr(event, "action", "")) if event is not None else ""
        if self.closed or self._muted or action.endswith("ing"):  # adding/changing/removing: wait for the end
            return
        if event is not None and event.source is self.points and action.endswith("added") and self._shift_click:
            self._shift_click = False
            added = list(getattr(event, "data_indices", ()) or [len(self.points.data) - 1])
            P.set_signs(self.points, added, "negative")
        self.refresh_prompt()

    def refresh_prompt(self) -> None:
        """Read the prompt of the slice on screen (the session may not have heard of the slice yet)."""
        s = self.current_slice()
        self.session.set_prompt(s, P.read_prompt(self.points, self.boxes, s, L.plane_shape(self.image)[1]))

    def set_negative_mode(self, negative: bool) -> None:
        self.negative_mode = bool(negative)
        self.points.feature_defaults = {L.SIGN: "negative" if negative else "positive"}
        self.sign_changed.emit(self.negative_mode)

    def toggle_sign(self) -> None:
        """Key T: new points switch between object and background; in select mode, flip the selected ones."""
        if P.flip_selected(self.points):
            self.refresh_prompt()
            return
        self.set_negative_mode(not self.negative_mode)

    # ------------------------------------------------------------------ candidates
    def _on_candidates(self, slice_index) -> None:
        if slice_index == self.session.slice_index:
            self._draw()

    def _draw(self) -> None:
        if self.closed:
            return
        s = self.session.slice_index
        self.buttons_changed.emit(candidate_layers.show(self.candidates, self.image, s, self.session.candidates()))

    def select(self, k: int) -> None:
        """Keys 1/2/3 (k = 0/1/2): which candidate a commit writes."""
        try:
            self.session.select(int(k))
        except ValueError as err:
            self.session.say(str(err), "warning")

    # ------------------------------------------------------------------ labels
    def commit(self, object_id: int | None = None, overwrite: bool = False):
        """Key C: write the selected candidate into "SAM labels" as one undoable step; returns the change."""
        try:
            change = self.session.plan_commit(np.asarray(self.labels.data), object_id, overwrite=overwrite)
        except (ValueError, TypeError) as err:
            self.session.say(f"Not committed: {err}", "warning")
            return None
        if change:
            self.labels.data_setitem(change.indices, change.new.astype(self.labels.data.dtype))
        self.labels.selected_label = change.object_id
        self.clear()
        self.session.say(f"Committed object {change.object_id} ({change.n_changed} pixels changed).")
        return change

    def clear(self) -> None:
        """Key Shift-C: remove this slice's prompts and candidates; the labels are not touched."""
        s = self.session.slice_index
        if s is None:
            return
        self._muted = True
        try:
            P.remove_on_slice(self.points, self.boxes, s)
        finally:
            self._muted = False
        self.session.clear(s)

    def edit_label(self, object_id: int | None = None) -> None:
        """Key E: the label picked in "SAM labels" becomes the prompt on this slice; commit replaces it."""
        oid = int(object_id if object_id is not None else self.labels.selected_label)
        if oid < 1:
            self.session.say("Pick a label (not background) in SAM labels to edit, with napari's picker (key L).",
                             "warning")
            return
        self.clear()
        try:
            self.session.start_edit(np.asarray(self.labels.data), oid)
        except ValueError as err:
            self.session.say(str(err), "warning")

    def save_labels(self, path) -> list[str]:
        from ..writers import write_labels_tiff

        attrs = {"scale": self.labels.scale, "translate": self.labels.translate, "name": self.labels.name}
        return write_labels_tiff(str(path), np.asarray(self.labels.data), attrs)

    # ------------------------------------------------------------------ close
    def close(self) -> None:
        """Stop the session and unhook everything this link connected."""
        if self.closed:
            return
        self.closed = True
        self._slice_timer.stop()
        self._boxes_shown.close()
        self.session.close()
        for layer, keys in self._bound:
            for key in keys:
                try:
                    layer.bind_key(key, None)
                except (TypeError, ValueError, KeyError):
                    pass
        self._bound = []
        for layer in (self.points, self.boxes):
            disconnect_quietly(layer.events.data, self._on_prompt_layer_changed)
        if self._on_points_press in self.points.mouse_drag_callbacks:
            self.points.mouse_drag_callbacks.remove(self._on_points_press)
        disconnect_quietly(self.image.events.data, self._on_image_data)
        disconnect_quietly(self.viewer.dims.events.current_step, self._on_dims)
        disconnect_quietly(self.viewer.dims.events.ndisplay, self._on_dims)
