"""SAM Volume's propagation rows: the object, when a walk stops, and Propagate / Propagate all / Correct.

Each action runs as the dock's one background job (a second one is refused
with a message while it runs) and ends in one :class:`~napari_sam.commit.LabelChange`
of the stack, written with ``Labels.data_setitem``: one undo step. The change
is planned against the labels *as they are when the result arrives*, so
strokes painted while the job ran stay as they are, and other objects are
never taken.

Correct: fix the object on the slice shown with SAM Annotator (E edits the
object: its mask becomes the prompt; add points until the candidate is right),
then press Correct from this slice: that candidate is the slice's new mask and
the object is walked again from there both ways until it agrees with what was
there. Slices the user drew or corrected are kept.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QFormLayout, QPushButton, QSpinBox

from ..commit import paintable, to_image_indices
from ..volume import annotations_from_labels
from ..volume.propagate import (
    DEFAULT_IOU_THRESHOLD,
    SamSliceSegmenter,
    correct,
    plan_objects_change,
    propagate,
    propagate_all,
)
from ..volume.propagation.anisotropy import z_spacing_from_scale
from ..volume.propagation.objects import NEGATIVES_PROMPT, volume_change

#: Area growth (fraction of the smallest area on a walk) that ends it when "Stop when it grows again" is on.
REGROWTH_LIMIT = 0.25
_LABEL_MAX = 2**31 - 1  # QSpinBox holds a C int


class PropagationRows:
    def __init__(self, dock, form: QFormLayout) -> None:
        self.dock = dock
        self.fixed: dict[int, set[int]] = {}  # object id -> slices the user drew or corrected
        self.label_spin = QSpinBox()
        self.label_spin.setRange(1, _LABEL_MAX)
        self.label_spin.setToolTip("Id of the object to propagate or correct (default: the label selected in SAM labels).")
        form.addRow("Object id", self.label_spin)
        self.iou_spin = QDoubleSpinBox()
        self.iou_spin.setRange(0.0, 1.0)
        self.iou_spin.setSingleStep(0.05)
        self.iou_spin.setValue(DEFAULT_IOU_THRESHOLD)
        self.iou_spin.setToolTip("A walk stops when a slice's mask jumps away from the previous slice's: the share of "
                                 "the smaller mask inside the other falls under this.")
        form.addRow("Jump stop", self.iou_spin)
        self.regrowth_check = QCheckBox("Stop when it grows again")
        self.regrowth_check.setToolTip(
            f"Also end a walk when the object's area grows by more than {REGROWTH_LIMIT:.0%} over the smallest area "
            "seen on the way: a rounded object that shrinks towards its end and grows again has usually slid into "
            "the object stacked above or below it.")
        form.addRow("", self.regrowth_check)
        self.propagate_button = self._button(form, "Propagate", self.propagate,
                                             "Segment the object through the stack from every slice where it is drawn.")
        self.all_button = self._button(form, "Propagate all", self.propagate_all,
                                       "Propagate every object drawn on the slice shown at once, none taking another's "
                                       "voxels.")
        self.correct_button = self._button(form, "Correct from this slice", self.correct,
                                           "The candidate shown on this slice (SAM Annotator: E edits the object, then "
                                           "add points) becomes the object here; it is walked again from here both ways.")

    @staticmethod
    def _button(form, text, action, tip) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip + " One undo step in SAM labels.")
        button.clicked.connect(lambda: action())
        form.addRow(button)
        return button

    @property
    def buttons(self) -> list[QPushButton]:
        return [self.propagate_button, self.all_button, self.correct_button]

    def options(self) -> dict:
        """The stop settings; unticked "grows again" leaves each action its own default (Propagate all stops
        a walk whose mask doubles, one object walks on). The distance between slices comes from the image
        layer's scale along the walked axis (ValueError for a scale of 0, below 0 or not a number)."""
        options = dict(iou_threshold=float(self.iou_spin.value()))
        if self.regrowth_check.isChecked():
            options["max_regrowth"] = REGROWTH_LIMIT
        image = self.dock.image
        if image is not None:
            options["z_spacing"] = z_spacing_from_scale(image.scale, self.dock.axis_spin.value())
        return options

    def _context(self):
        """(segmenter, index, labels layer, the stack's labels now, the slice shown along the walked axis)."""
        dock = self.dock
        stack = dock._stack()
        index = dock._image_index()
        layer = dock.link.labels
        z = int(dock.link.current_slice()[dock.axis_spin.value()])
        return SamSliceSegmenter(stack), index, layer, np.asarray(layer.data[index]), z

    # ------------------------------------------------------------------ actions
    def propagate(self) -> bool:
        """Propagate the chosen object through the stack in the background."""
        label = int(self.label_spin.value())
        try:
            segmenter, index, layer, labels, _ = self._context()
            annotations = annotations_from_labels(labels, label)
            options = self.options()
        except (ValueError, TypeError) as err:
            self.dock._fail(f"cannot propagate object {label}: {err}")
            return False
        others = np.where(labels == label, 0, labels)
        self.fixed[label] = set(annotations)

        def job():
            return propagate(segmenter, annotations, others=others, prompt=NEGATIVES_PROMPT, progress=self.dock._progress,
                             should_cancel=self.dock.jobs.should_cancel, **options)

        def done(result):
            current = np.asarray(layer.data[index])
            target = current.copy()
            target[paintable(current, result.mask, label)] = label
            self._write(result, layer, index, lambda: volume_change(current, target, (label,)),
                        f"Object {label}: {result.summary()}")

        return self.dock._start(job, done, f"Propagating object {label}")

    def propagate_all(self) -> bool:
        """Propagate every object drawn on the slice shown, one-to-one in each slice."""
        try:
            segmenter, index, layer, labels, z = self._context()
            options = self.options()
        except (ValueError, TypeError) as err:
            self.dock._fail(f"cannot propagate the objects: {err}")
            return False
        job = lambda: propagate_all(segmenter, labels, z, progress=self.dock._progress,  # noqa: E731
                                    should_cancel=self.dock.jobs.should_cancel, **options)
        ids = [int(i) for i in np.unique(labels[z]) if i > 0]
        for oid in ids:
            self.fixed[oid] = {int(q) for q in np.flatnonzero((labels == oid).any(axis=(1, 2)))}

        def done(result):
            current = np.asarray(layer.data[index])
            self._write(result, layer, index, lambda: plan_objects_change(current, result),
                        f"{len(result.objects)} objects propagated from slice {z}.")

        if not ids:
            self.dock._fail(f"slice {z} holds no object: commit objects on it first, then propagate them all")
            return False
        return self.dock._start(job, done, f"Propagating {len(ids)} objects from slice {z}")

    def correct(self) -> bool:
        """The candidate on the slice shown fixes the object there; re-propagated from there both ways."""
        label = int(self.label_spin.value())
        dock = self.dock
        try:
            segmenter, index, layer, labels, z = self._context()
            candidates = dock.session.candidates()
            if candidates is None:
                raise ValueError("no candidate on this slice: with SAM Annotator press E on the object (or click "
                                 "points) until the candidate is right, then press Correct")
            mask = np.asarray(candidates.mask, dtype=bool)
            options = self.options()
        except (ValueError, TypeError) as err:
            dock._fail(f"cannot correct object {label}: {err}")
            return False
        fixed = set(self.fixed.get(label, set())) - {z}
        job = lambda: correct(segmenter, labels, label, z, mask=mask, fixed_slices=fixed,  # noqa: E731
                              should_cancel=dock.jobs.should_cancel, **options)

        def done(result):
            self.fixed.setdefault(label, set()).add(z)
            current = np.asarray(layer.data[index])
            if not np.array_equal(current, labels):
                dock._fail("SAM labels changed while the correction ran; press Correct again")
                return
            self._write(result.result, layer, index, lambda: result.change, f"Object {label} corrected from slice {z}: "
                        f"{result.summary()}")
            dock.link.clear()  # the candidate is used

        return dock._start(job, done, f"Correcting object {label} from slice {z}")

    # ------------------------------------------------------------------ results
    def _write(self, result, layer, index, plan, text: str) -> None:
        dock = self.dock
        dock.last_propagation = result
        if getattr(result, "cancelled", False):
            dock.status.show_status(f"Cancelled; the labels were not changed.\n{result.summary()}")
            return
        if layer not in dock.viewer.layers:
            dock._fail(f"the labels layer {layer.name!r} was removed; the result was not written")
            return
        change = plan()
        if change:
            full = to_image_indices(change.indices, index)
            layer.data_setitem(full, change.new.astype(layer.data.dtype))
        dock.status.show_status(text)
        show_info(f"SAM Volume: {text.splitlines()[0]}")
