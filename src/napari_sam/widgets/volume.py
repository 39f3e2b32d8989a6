"""The "SAM Volume" dock widget: embed a whole stack once, then follow an object through z.

Glue between napari and :mod:`napari_sam.volume`, independent of the SAM
Annotator widget (they meet only in the labels layer). Every long step runs
in a background :class:`~napari_sam.widgets.tasks.Task` with its own :class:`~napari_sam.model.SamPredictor`
on a shared model, so napari stays responsive and the predictor of another
widget is never disturbed. One job at a time: the encoder already keeps every
CPU core busy.

Nothing the user made is lost: the object is read from the labels layer when
"Propagate" is pressed, and the result is written back with
``Labels.data_setitem`` (one undoable edit) only where the labels are still
background or already the object's own id *when the result arrives*, so
strokes painted while the job ran stay as they are.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QCoreApplication, QObject, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..volume import (
    EmbeddingStore,
    StackEmbeddings,
    annotations_from_labels,
    default_folder,
    embed_stack,
    object_paint_indices,
    propagate_with_sam,
    stack_through,
    to_image_indices,
)
from ..volume.propagate import DEFAULT_IOU_THRESHOLD
from .events import disconnect_quietly
from .tasks import Task

#: Area growth (fraction of the smallest area on a walk) that ends it when "Stop when it grows again" is on.
REGROWTH_LIMIT = 0.25

LABELS_NAME = "SAM labels"
NEW_LABELS = f"(new) {LABELS_NAME}"
DEFAULT_MODEL = "demo"
_LABEL_MAX = 2**31 - 1  # QSpinBox holds a C int


def model_names() -> list[str]:
    try:
        from ..model.zoo import list_models

        return [info.name for info in list_models()]
    except Exception:  # a broken registry must not break the widget
        return [DEFAULT_MODEL]


def stack_axes(layer: Image) -> int:
    """Number of axes before a slice's own (rows, columns[, channels]) axes."""
    return layer.data.ndim - (3 if layer.rgb else 2)


def format_bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class _Relay(QObject):
    """Carries progress from a worker thread to the widget (queued across threads)."""

    progress = Signal(int, int)


class _Models:
    """Models loaded so far, by name or path; loaded in worker threads, so guarded by a lock."""

    def __init__(self):
        self._lock = threading.Lock()
        self._models: dict[str, object] = {}

    def get(self, spec: str):
        from ..model import load_model

        with self._lock:
            if spec not in self._models:
                self._models[spec] = load_model(spec)
            return self._models[spec]


class VolumeWidget(QWidget):
    """Dock widget "SAM Volume".

    ``confirm_clear=False`` clears the cache without asking (scripts, tests).
    """

    def __init__(self, napari_viewer, confirm_clear: bool = True):
        super().__init__()
        self.viewer = napari_viewer
        self.confirm_clear = confirm_clear
        self._models = _Models()
        self._worker = None
        self._cancel = threading.Event()
        app = QCoreApplication.instance()
        if app is not None:  # napari is quitting: a running job stops after its current slice
            app.aboutToQuit.connect(self._cancel.set)
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self._watched_labels: Labels | None = None
        self._closed = False
        self._chosen_image: Image | None = None
        self._named: list = []  # layers whose renaming we follow
        self.last_embed = None  # EmbedResult of the last "Embed stack"
        self.last_propagation = None  # PropagationResult of the last "Propagate"
        self._build_ui()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        self._update_cache_size()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The 3D (or 4D) image whose slices are embedded and segmented.")
        self.image_combo.currentTextChanged.connect(self._on_image_chosen)
        form.addRow("Image", self.image_combo)

        self.axis_spin = QSpinBox()
        self.axis_spin.setToolTip(
            "The axis walked through slice by slice (default: the one just before rows and columns, z of (t, z, y, x)). "
            "Other leading axes (time) are taken at the position shown."
        )
        form.addRow("Slice axis", self.axis_spin)

        self.model_combo = QComboBox()
        self.model_combo.addItems(model_names())
        if self.model_combo.findText(DEFAULT_MODEL) >= 0:
            self.model_combo.setCurrentText(DEFAULT_MODEL)
        self.model_combo.setToolTip("SAM model from the model zoo (downloaded once, then cached). 'demo' ships with the plugin.")
        form.addRow("Model", self.model_combo)
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("optional: path to a checkpoint file")
        self.checkpoint_edit.setToolTip("A SAM checkpoint file (.pth/.pt); when given it is used instead of the zoo model.")
        form.addRow("Checkpoint", self.checkpoint_edit)

        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip(
            f"Labels layer holding the objects; '{NEW_LABELS}' makes an empty one the size of the image. "
            "Existing labels are never wiped."
        )
        self.labels_combo.currentTextChanged.connect(self._on_labels_chosen)
        form.addRow("Labels", self.labels_combo)

        self.cache_edit = QLineEdit(str(default_folder()))
        self.cache_edit.setToolTip("Folder where slice embeddings are kept between sessions (one file per slice).")
        self.cache_edit.editingFinished.connect(self._update_cache_size)
        form.addRow("Cache folder", self.cache_edit)
        self.cache_label = QLabel()
        self.cache_label.setToolTip("Disk space used by the embeddings in the cache folder.")
        self.clear_button = QPushButton("Clear cache")
        self.clear_button.setToolTip("Delete every embedding in the cache folder (other files there are kept).")
        self.clear_button.clicked.connect(lambda: self.clear_cache())
        row = QHBoxLayout()
        row.addWidget(self.cache_label, 1)
        row.addWidget(self.clear_button)
        form.addRow("Cache size", row)

        self.embed_button = QPushButton("Embed stack")
        self.embed_button.setToolTip("Compute the embedding of every slice in the background; slices already cached are skipped.")
        self.embed_button.clicked.connect(lambda: self.embed())

        self.label_spin = QSpinBox()
        self.label_spin.setRange(1, _LABEL_MAX)
        self.label_spin.setToolTip("Id of the object to propagate (default: the label selected in the labels layer).")
        form2 = QFormLayout()
        form2.addRow("Object id", self.label_spin)
        self.iou_spin = QDoubleSpinBox()
        self.iou_spin.setRange(0.0, 1.0)
        self.iou_spin.setSingleStep(0.05)
        self.iou_spin.setDecimals(2)
        self.iou_spin.setValue(DEFAULT_IOU_THRESHOLD)
        self.iou_spin.setToolTip(
            "A walk stops when a slice's mask overlaps the previous slice's mask less than this (IoU, 0 to 1)."
        )
        form2.addRow("IoU stop", self.iou_spin)
        self.regrowth_check = QCheckBox("Stop when it grows again")
        self.regrowth_check.setToolTip(
            f"Also end a walk when the object's area grows by more than {REGROWTH_LIMIT:.0%} over the smallest area "
            "seen on the way: a rounded object that shrinks towards its end and grows again has usually slid "
            "into the object stacked above or below it."
        )
        form2.addRow("", self.regrowth_check)
        self.propagate_button = QPushButton("Propagate")
        self.propagate_button.setToolTip(
            "Segment the object through the neighbouring slices, from every slice where it is drawn; "
            "the result is one undoable edit of the labels layer."
        )
        self.propagate_button.clicked.connect(lambda: self.propagate())

        self.progress_bar = QProgressBar()
        self.progress_bar.setToolTip("Slices done in the running job.")
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job after the current slice (finished slices stay cached).")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        prow = QHBoxLayout()
        prow.addWidget(self.progress_bar, 1)
        prow.addWidget(self.cancel_button)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setToolTip("What the last step did, or why it could not run.")

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.embed_button)
        layout.addLayout(form2)
        layout.addWidget(self.propagate_button)
        layout.addLayout(prow)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    def _fail(self, text: str) -> None:
        show_error(f"SAM Volume: {text}")
        self._set_status(text)

    # ------------------------------------------------------------------ layers
    def _image_layers(self) -> list[Image]:
        return [lyr for lyr in self.viewer.layers if isinstance(lyr, Image) and stack_axes(lyr) >= 1]

    def _refresh_layers(self, event=None) -> None:
        for layer in self.viewer.layers:
            # A renamed layer stays chosen under its new name.
            if all(layer is not other for other in self._named):
                layer.events.name.connect(self._refresh_layers)
                self._named.append(layer)
        self._named = [lyr for lyr in self._named if lyr in self.viewer.layers]
        chosen_image, chosen_labels = self._chosen_image, self._watched_labels
        for combo, names, chosen in (
            (self.image_combo, [lyr.name for lyr in self._image_layers()], chosen_image),
            (self.labels_combo, [NEW_LABELS] + [lyr.name for lyr in self.viewer.layers if isinstance(lyr, Labels)], chosen_labels),
        ):
            current = chosen.name if chosen is not None and chosen in self.viewer.layers else combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current in names:
                combo.setCurrentText(current)
            combo.blockSignals(False)
        if self.labels_combo.currentText() == NEW_LABELS and self._labels_by_name(LABELS_NAME) is not None:
            self.labels_combo.setCurrentText(LABELS_NAME)
        self._on_image_chosen(self.image_combo.currentText())
        self._on_labels_chosen(self.labels_combo.currentText())

    def _labels_by_name(self, name: str) -> Labels | None:
        for lyr in self.viewer.layers:
            if isinstance(lyr, Labels) and lyr.name == name:
                return lyr
        return None

    @property
    def image(self) -> Image | None:
        name = self.image_combo.currentText()
        for lyr in self._image_layers():
            if lyr.name == name:
                return lyr
        return None

    @property
    def labels(self) -> Labels | None:
        return self._labels_by_name(self.labels_combo.currentText())

    def set_image(self, layer: Image) -> None:
        """Choose ``layer`` (by object); a 2D image is refused with a message."""
        if layer not in self.viewer.layers:
            raise ValueError(f"layer {layer.name!r} is not in this viewer")
        if not isinstance(layer, Image) or stack_axes(layer) < 1:
            self._fail(f"{layer.name!r} is a single 2D image, not a stack: open a 3D stack (slices, rows, columns)")
            return
        self.image_combo.setCurrentText(layer.name)

    def _on_image_chosen(self, name: str) -> None:
        image = self._chosen_image = self.image
        n = stack_axes(image) if image is not None else 1
        self.axis_spin.blockSignals(True)
        self.axis_spin.setRange(0, max(0, n - 1))
        if self.axis_spin.property("for_image") != name:
            self.axis_spin.setValue(max(0, n - 1))  # z of (t, z, y, x)
            self.axis_spin.setProperty("for_image", name)
        self.axis_spin.blockSignals(False)

    def _stop_watching_labels(self) -> None:
        """Forget the labels layer whose selected label the id box follows."""
        if self._watched_labels is not None:
            disconnect_quietly(self._watched_labels.events.selected_label, self._on_selected_label)
            self._watched_labels = None

    def _on_labels_chosen(self, name: str) -> None:
        self._stop_watching_labels()
        layer = self.labels
        if layer is not None:
            layer.events.selected_label.connect(self._on_selected_label)
            self._watched_labels = layer
            self._on_selected_label()

    def _on_selected_label(self, event=None) -> None:
        layer = self._watched_labels
        if layer is not None and 0 < int(layer.selected_label) <= _LABEL_MAX:
            self.label_spin.setValue(int(layer.selected_label))

    def labels_for(self, image: Image) -> Labels:
        """The chosen labels layer, or a new empty uint32 one the shape of ``image`` (never replaces one)."""
        shape = tuple(image.data.shape[:-1] if image.rgb else image.data.shape)
        layer = self.labels
        if layer is None:
            layer = self._labels_by_name(LABELS_NAME)
            if layer is None or tuple(layer.data.shape) != shape:
                n = image.ndim
                layer = self.viewer.add_labels(
                    np.zeros(shape, dtype=np.uint32),
                    name=LABELS_NAME,
                    scale=tuple(image.scale[-n:]),
                    translate=tuple(image.translate[-n:]),
                )
            self.labels_combo.setCurrentText(layer.name)
        if tuple(layer.data.shape) != shape:
            raise ValueError(
                f"labels layer {layer.name!r} has shape {tuple(layer.data.shape)}, image {image.name!r} has {shape}; "
                "choose a labels layer of the image's size (or the new one)"
            )
        return layer

    # ------------------------------------------------------------------ inputs
    def _model_spec(self) -> str:
        path = self.checkpoint_edit.text().strip()
        if path:
            if not Path(path).expanduser().is_file():
                raise ValueError(f"the checkpoint file {path} does not exist")
            return str(Path(path).expanduser())
        name = self.model_combo.currentText()
        if not name:
            raise ValueError("choose a model")
        return name

    def store(self) -> EmbeddingStore:
        text = self.cache_edit.text().strip()
        return EmbeddingStore(text or None)

    def _stack(self, image: Image):
        """(stack, index) of the image through the position shown, along the chosen axis."""
        if stack_axes(image) < 1:
            raise ValueError(f"{image.name!r} is a single 2D image, not a stack: open a 3D stack (slices, rows, columns)")
        n = image.ndim
        point = np.asarray(self.viewer.dims.point, dtype=float)[-n:] if len(self.viewer.dims.point) >= n else np.zeros(n)
        position = np.round(image.world_to_data(point)).astype(int)[: stack_axes(image)]
        shape = image.data.shape[: stack_axes(image)]
        position = np.clip(position, 0, np.asarray(shape) - 1)
        return stack_through(image.data, tuple(position), axis=self.axis_spin.value(), rgb=image.rgb)

    def _current_image(self) -> Image:
        image = self.image
        if image is None:
            raise ValueError("choose a 3D image layer (2D images have no slices to walk through)")
        return image

    # ------------------------------------------------------------------ jobs
    def is_idle(self) -> bool:
        return self._worker is None

    def _start(self, fn, on_done, what: str):
        self._cancel.clear()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        # A Task, not a napari thread worker: closing napari mid-job must not crash it (see tasks.py).
        worker = Task(
            fn,
            on_returned=on_done,
            on_errored=lambda err: self._fail(f"{what} failed: {err}"),
            on_finished=self._on_finished,
            name=f"napari-sam {what.lower()}",
        )
        self._worker = worker
        self._set_busy(True)
        self._set_status(f"{what} …")
        worker.start()
        return worker

    def _set_busy(self, busy: bool) -> None:
        self.embed_button.setEnabled(not busy)
        self.propagate_button.setEnabled(not busy)
        self.clear_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _on_finished(self) -> None:
        self._worker = None
        self._set_busy(False)
        self._update_cache_size()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(min(done, max(1, total)))

    def cancel(self) -> None:
        """Ask the running job to stop after the current slice."""
        self._cancel.set()

    def _progress(self, done: int, total: int) -> None:  # worker thread
        self._relay.progress.emit(int(done), int(total))

    def _prepare(self, what: str):
        """Inputs of a job read on the main thread, or None after a message."""
        if self._worker is not None:
            self._fail("a job is already running; wait for it or cancel it")
            return None
        try:
            image = self._current_image()
            stack, index = self._stack(image)
            spec = self._model_spec()
            store = self.store()
        except (ValueError, TypeError) as err:
            self._fail(f"cannot {what}: {err}")
            return None
        return image, stack, index, spec, store

    # ------------------------------------------------------------------ embed
    def embed(self):
        """Embed every slice of the chosen stack in the background; returns the worker (or None)."""
        inputs = self._prepare("embed the stack")
        if inputs is None:
            return None
        image, stack, index, spec, store = inputs
        models, progress, cancel = self._models, self._progress, self._cancel

        def job():
            from ..model import SamPredictor

            predictor = SamPredictor(models.get(spec))
            emb = StackEmbeddings(predictor, stack, store)
            result = embed_stack(predictor, emb, progress=progress, should_cancel=cancel.is_set)
            return result, emb.store_error

        return self._start(job, self._on_embedded, "Embedding the stack")

    def _on_embedded(self, answer) -> None:
        result, store_error = answer
        self.last_embed = result
        done = len(result.computed) + len(result.loaded)
        text = f"{done} of {result.total} slices embedded ({len(result.computed)} computed, {len(result.loaded)} from the cache)"
        if result.cancelled:
            text += "; cancelled: press Embed stack again to go on"
        self._set_status(text + ".")
        if store_error is not None:
            show_warning(f"SAM Volume: {store_error}; embeddings were kept in memory only")

    # ------------------------------------------------------------------ propagate
    def propagate(self):
        """Propagate the chosen object id through the stack in the background; returns the worker (or None)."""
        inputs = self._prepare("propagate")
        if inputs is None:
            return None
        image, stack, index, spec, store = inputs
        label = int(self.label_spin.value())
        try:
            labels_layer = self.labels_for(image)
            labels_stack = np.asarray(labels_layer.data[index])
            annotations = annotations_from_labels(labels_stack, label)
        except (ValueError, TypeError) as err:
            self._fail(f"cannot propagate object {label}: {err}")
            return None
        iou = float(self.iou_spin.value())
        regrowth = REGROWTH_LIMIT if self.regrowth_check.isChecked() else None
        models, progress, cancel = self._models, self._progress, self._cancel

        def job():
            from ..model import SamPredictor

            predictor = SamPredictor(models.get(spec))
            emb = StackEmbeddings(predictor, stack, store)
            result = propagate_with_sam(
                predictor, stack, annotations, embeddings=emb, iou_threshold=iou, max_regrowth=regrowth,
                progress=progress, should_cancel=cancel.is_set,
            )
            return result, emb.store_error

        return self._start(
            job, lambda answer: self._on_propagated(answer, labels_layer, index, label), f"Propagating object {label}"
        )

    def _on_propagated(self, answer, labels_layer: Labels, index, label: int) -> None:
        result, store_error = answer
        self.last_propagation = result
        if store_error is not None:
            show_warning(f"SAM Volume: {store_error}; embeddings were kept in memory only")
        if self._closed:
            return  # the widget was closed meanwhile: the user no longer expects an edit
        if result.cancelled:
            self._set_status(f"Propagation of object {label} cancelled; the labels were not changed.\n{result.summary()}")
            return
        if labels_layer not in self.viewer.layers:
            self._fail(f"the labels layer {labels_layer.name!r} was removed; the propagated object was not written")
            return
        try:
            # Read the labels now, not at the start: strokes made meanwhile are kept.
            current = np.asarray(labels_layer.data[index])
            idx = to_image_indices(object_paint_indices(current, result.mask, label), index)
            if len(idx[0]):
                labels_layer.data_setitem(idx, label)
        except (ValueError, TypeError) as err:
            self._fail(f"could not write object {label}: {err}")
            return
        text = f"Object {label}: {result.summary()}"
        self._set_status(text)
        show_info(f"SAM Volume: {text}")

    # ------------------------------------------------------------------ cache
    def _update_cache_size(self) -> None:
        try:
            store = self.store()
            self.cache_label.setText(f"{format_bytes(store.usage_bytes())} ({len(store)} slices)")
        except (ValueError, TypeError, OSError) as err:
            self.cache_label.setText(f"unusable: {err}")

    def clear_cache(self) -> bool:
        """Delete the cached embeddings (after a confirmation unless ``confirm_clear`` is False)."""
        if self._worker is not None:
            self._fail("wait for the running job (or cancel it) before clearing the cache")
            return False
        try:
            store = self.store()
        except (ValueError, TypeError) as err:
            self._fail(f"cannot clear the cache: {err}")
            return False
        if self.confirm_clear:
            answer = QMessageBox.question(
                self, "Clear cache", f"Delete the {len(store)} cached slice embeddings in {store.folder}?"
            )
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            store.clear()
        except OSError as err:
            self._fail(f"could not clear the cache: {err}")
            return False
        self._update_cache_size()
        self._set_status(f"Cache {store.folder} cleared.")
        return True

    # ------------------------------------------------------------------ close
    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the running job and disconnect from the viewer."""
        self._closed = True
        self._cancel.set()
        for emitter, slot in (
            (self.viewer.layers.events.inserted, self._refresh_layers),
            (self.viewer.layers.events.removed, self._refresh_layers),
        ):
            disconnect_quietly(emitter, slot)
        for layer in self._named:
            disconnect_quietly(layer.events.name, self._refresh_layers)
        self._named = []
        self._stop_watching_labels()
