"""Segment everything's settings as form rows: the grid size, and the thresholds as sliders.

Moving a threshold only re-filters what was found (``on_thresholds``); the
grid size needs the search run again.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFormLayout, QSpinBox
from superqt import QLabeledDoubleSlider, QLabeledSlider

from ..auto.settings import MAX_POINTS_PER_SIDE, AutoSettings
from ..session.proposals import THRESHOLDS

_ROWS = {  # setting: (row title, tooltip)
    "pred_iou_thresh": ("Predicted IoU", "Keep masks whose predicted quality (IoU) is above this."),
    "stability_score_thresh": ("Stability", "Keep masks that barely change when the mask threshold moves."),
    "box_nms_thresh": ("Overlap (NMS)", "Of two masks whose boxes overlap more than this (IoU), keep the better one."),
    "min_mask_region_area": ("Smallest region", "Fill holes and remove islands smaller than this many pixels (0: off)."),
}
_AREA_MAX = 10_000


class SettingsRows:
    def __init__(self, form: QFormLayout, on_thresholds: Callable[[], None]) -> None:
        self.points_spin = QSpinBox()
        self.points_spin.setRange(1, MAX_POINTS_PER_SIDE)
        self.points_spin.setToolTip("Points per side of the grid that prompts the model: more find smaller objects, "
                                    "and take longer (the square of it).")
        form.addRow("Points per side", self.points_spin)
        self.sliders = {}
        for name in THRESHOLDS:
            title, tip = _ROWS[name]
            area = name == "min_mask_region_area"
            slider = QLabeledSlider(Qt.Orientation.Horizontal) if area else QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            if area:
                slider.setRange(0, _AREA_MAX)
            else:
                slider.setRange(0.0, 1.0)
                slider.setSingleStep(0.01)
            slider.setToolTip(tip)
            slider.valueChanged.connect(lambda _: on_thresholds())
            self.sliders[name] = slider
            form.addRow(title, slider)
        self.show(AutoSettings())

    def show(self, settings: AutoSettings) -> None:
        """Put ``settings`` into the rows without re-filtering."""
        self.points_spin.setValue(settings.points_per_side)
        for name, slider in self.sliders.items():
            slider.blockSignals(True)
            slider.setValue(min(getattr(settings, name), _AREA_MAX) if name == "min_mask_region_area"
                            else getattr(settings, name))
            slider.blockSignals(False)

    def thresholds(self) -> dict:
        return {name: (int(s.value()) if name == "min_mask_region_area" else round(float(s.value()), 3))
                for name, s in self.sliders.items()}

    def settings(self) -> dict:
        return {"points_per_side": int(self.points_spin.value()), **self.thresholds()}

    def set(self, **settings) -> None:
        """Set rows by their settings names (scripts, tests); thresholds re-filter."""
        for name, value in settings.items():
            (self.points_spin if name == "points_per_side" else self.sliders[name]).setValue(value)
