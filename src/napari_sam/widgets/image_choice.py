"""The "Image" combo of a SAM dock: the viewer's image layers, the chosen one kept through renames."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QComboBox

from . import layers as L
from .events import disconnect_quietly


class ImageChoice:
    """Keeps ``combo`` listing the image layers ``accept`` takes; calls ``on_chosen(layer or None)``."""

    def __init__(self, viewer, combo: QComboBox, on_chosen: Callable, accept: Callable = lambda layer: True) -> None:
        self.viewer, self.combo, self.on_chosen, self.accept = viewer, combo, on_chosen, accept
        self.chosen = None
        self._named: list = []
        # A long layer name ("SAM demo: nuclei stack (generated)") must not widen the dock and so
        # take width from the canvas: the combo shows 12 characters and elides the rest.
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(12)
        combo.currentTextChanged.connect(self._on_text)
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)

    def layers(self) -> list:
        return [lyr for lyr in L.image_layers(self.viewer) if self.accept(lyr)]

    def refresh(self, event=None) -> None:
        layers = self.layers()
        for layer in layers:  # a renamed layer stays chosen under its new name
            if all(layer is not other for other in self._named):
                layer.events.name.connect(self.refresh)
                self._named.append(layer)
        keep = self.chosen if any(self.chosen is lyr for lyr in layers) else None
        names = [lyr.name for lyr in layers]
        self.combo.blockSignals(True)
        self.combo.clear()
        self.combo.addItems(names)
        if keep is not None:
            self.combo.setCurrentText(keep.name)
        self.combo.blockSignals(False)
        self._on_text(self.combo.currentText())

    def choose(self, layer) -> None:
        if all(layer is not lyr for lyr in self.layers()):
            raise ValueError(f"{getattr(layer, 'name', layer)!r} cannot be chosen here")
        self.combo.setCurrentText(layer.name)
        self._on_text(layer.name)

    def _on_text(self, name: str) -> None:
        layer = next((lyr for lyr in self.layers() if lyr.name == name), None)
        if layer is not self.chosen:
            self.chosen = layer
            self.on_chosen(layer)

    def close(self) -> None:
        for emitter in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            disconnect_quietly(emitter, self.refresh)
        for layer in self._named:
            disconnect_quietly(layer.events.name, self.refresh)
        self._named = []
