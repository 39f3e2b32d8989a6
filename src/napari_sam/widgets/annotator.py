"""The "SAM Annotator" dock widget: clicks in, labels out, napari never frozen.

The widget is glue: it reads prompts from napari layers, asks
:class:`~napari_sam.prompts.PromptBook` what to decode, runs the decoder
(fast, main thread) on an embedding from the cache, shows the candidates and
commits through :mod:`napari_sam.commit`. Embeddings are computed by
:class:`~.background.BackgroundEmbedder` in a worker thread.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np
from napari.layers import Image
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import commit as commit_mod
from ..embedding_cache import EmbeddingCache, EmbeddingKey
from ..fingerprint import array_fingerprint
from ..geometry import mask_box
from ..model.image import RULE_VERSION, stack_intensity_range
from ..prompts import NEGATIVE, POSITIVE, Prompt, PromptBook
from . import layers as L
from .background import BackgroundEmbedder, EmbedJob, close_progress, open_progress
from .engine import SamEngine
from .events import disconnect_quietly
from .tasks import Task

BROWSE = "Browse…"
DEFAULT_MODEL = "demo"
PREFETCH_DEPTH = 2  # slices on each side embedded ahead when idle
# Prefetching starts only after this long without a click or slice change: an
# encoder running next to the decoder would slow down the user's clicks.
PREFETCH_IDLE_MS = 1500

KEYS_HELP = """\
Mouse (layer "SAM points", add mode): click = point on the object (green);
Shift-click = background point (magenta). Layer "SAM boxes", rectangle mode: drag a box.
Keys (with a SAM layer selected): T toggle positive/negative points (and flip selected points),
1 / 2 / 3 pick a candidate, C commit, Shift-C clear prompts, E edit the label selected in "SAM labels".
Ctrl+Z / Ctrl+Shift+Z on "SAM labels" undo / redo a commit."""


def available_models() -> list[str]:
    try:
        from ..model.zoo import list_models

        return [info.name for info in list_models()]
    except Exception:  # a broken registry must not break the widget
        return []


def default_engine_factory(name, device, precision):
    return SamEngine.load(name, device=device, precision=precision)


class AnnotatorWidget(QWidget):
    """Dock widget "SAM Annotator"."""

    def __init__(self, napari_viewer, engine_factory=None, cache_mb: float = 1024.0, autoload: bool = True):
        super().__init__()
        self.viewer = napari_viewer
        self.engine_factory = engine_factory or default_engine_factory
        self.engine = None
        self.cache = EmbeddingCache(cache_mb)
        self.embedder = BackgroundEmbedder(self.cache, parent=self)
        self.book = PromptBook()
        self.image: Image | None = None
        self.points = self.boxes = self.labels = None
        self.candidates: list = []
        self.negative_mode = False
        self._shift_click = False
        self._muted = False
        self._ranges: dict[int, tuple | None] = {}
        self._current_key: EmbeddingKey | None = None
        self._current_slice: tuple[int, ...] | None = None
        self._loading = None
        self._load_serial = 0
        self._bound_layers: list = []
        self._bound_keys: list = []
        self._connected: list = []  # prompt layers whose data events we listen to
        self._closed = False
        self.prefetch_enabled = True
        self._prefetch_timer = QTimer(self)
        self._prefetch_timer.setSingleShot(True)
        self._prefetch_timer.setInterval(PREFETCH_IDLE_MS)
        self._prefetch_timer.timeout.connect(self._prefetch_now)

        self._build_ui()
        self.embedder.embedded.connect(self._on_embedded)
        self.embedder.failed.connect(self._on_embed_failed)
        self.embedder.busy_changed.connect(self._on_busy)
        self.viewer.layers.events.inserted.connect(self._refresh_image_choices)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.current_step.connect(self._on_slice_changed)
        self.viewer.dims.events.ndisplay.connect(self._on_slice_changed)
        self._bind_keys(self.viewer, digits=False)
        self._refresh_image_choices()
        QTimer.singleShot(0, _warm_up_progress_ui)
        if autoload and self._model_is_local(self.model_combo.currentText()):
            QTimer.singleShot(0, self.load_model)

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.setToolTip(KEYS_HELP)
        outer = QVBoxLayout(self)
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("Image layer to annotate: 2D, RGB, 3D (Z, Y, X) or nD; the last two axes are the plane")
        self.model_combo = QComboBox()
        models = available_models()
        self.model_combo.addItems(models + [BROWSE])
        if DEFAULT_MODEL in models:
            self.model_combo.setCurrentText(DEFAULT_MODEL)
        self.model_combo.setToolTip("Model: a name from the model zoo (downloaded once), or Browse… for a checkpoint file")
        self.device_combo = QComboBox()
        self.device_combo.addItems(_devices())
        self.device_combo.setToolTip("Where the model runs; auto = CUDA GPU, then Apple MPS, then CPU")
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(["auto", "fp32", "bf16"])
        self.precision_combo.setToolTip("Image encoder and mask decoder precision; auto = bf16 where it is fast (CUDA, CPUs with AVX512-BF16/AMX), else fp32")
        self.load_button = QPushButton("Load model")
        self.load_button.setToolTip("Load the chosen model (changing model, device or precision loads it too)")
        form.addRow("Image", self.image_combo)
        form.addRow("Model", self.model_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Precision", self.precision_combo)
        form.addRow("", self.load_button)
        outer.addLayout(form)

        prompts = QGroupBox("Prompts")
        pl = QVBoxLayout(prompts)
        self.sign_button = QPushButton("Points: positive (T)")
        self.sign_button.setCheckable(True)
        self.sign_button.setToolTip(
            'Toggle whether new points in "SAM points" mark the object (green) or the background (magenta). '
            "Key T; Shift-click always places a background point."
        )
        pl.addWidget(self.sign_button)
        row = QHBoxLayout()
        self.candidate_buttons = QButtonGroup(self)
        for k in range(3):
            b = QRadioButton(f"{k + 1}: –")
            b.setToolTip(f'Candidate {k + 1} (key {k + 1}); its predicted IoU, also shown in the layer name "SAM candidate {k + 1}"')
            self.candidate_buttons.addButton(b, k)
            row.addWidget(b)
        pl.addLayout(row)
        outer.addWidget(prompts)

        objects = QGroupBox("Objects")
        ol = QFormLayout(objects)
        self.id_spin = QSpinBox()
        self.id_spin.setRange(0, 2**31 - 1)
        self.id_spin.setSpecialValueText("new (max + 1)")
        self.id_spin.setToolTip("Id for the next committed object; 'new' = largest id in SAM labels + 1")
        self.overwrite_check = QCheckBox("overwrite other objects")
        self.overwrite_check.setToolTip("Off: a commit never changes pixels of other objects")
        buttons = QHBoxLayout()
        self.commit_button = QPushButton("Commit (C)")
        self.commit_button.setToolTip('Write the selected candidate into "SAM labels" (undo: Ctrl+Z on that layer)')
        self.clear_button = QPushButton("Clear (Shift-C)")
        self.clear_button.setToolTip("Remove the prompts and candidates of this slice; labels are not touched")
        self.edit_button = QPushButton("Edit label (E)")
        self.edit_button.setToolTip(
            'Edit the label selected in "SAM labels" (pick it with napari\'s picker, key L) on this slice: '
            "its mask and box become the prompt; add points, then commit to replace it"
        )
        for b in (self.commit_button, self.clear_button, self.edit_button):
            buttons.addWidget(b)
        self.save_button = QPushButton("Save labels…")
        self.save_button.setToolTip('Save "SAM labels" as TIFF (uint32, voxel size kept); name it *.labels.tif to reopen with the voxel size')
        ol.addRow("Object id", self.id_spin)
        ol.addRow("", self.overwrite_check)
        ol.addRow(buttons)
        ol.addRow(self.save_button)
        outer.addWidget(objects)

        self.cancel_button = QPushButton("Cancel embedding")
        self.cancel_button.setToolTip("Stop waiting for embeddings (the one running finishes in the background)")
        self.cancel_button.setEnabled(False)
        self.status = QLabel("Choose an image and a model.")
        self.status.setWordWrap(True)
        help_label = QLabel(KEYS_HELP)
        help_label.setWordWrap(True)
        help_label.setStyleSheet("font-size: small")
        outer.addWidget(self.cancel_button)
        outer.addWidget(self.status)
        outer.addWidget(help_label)
        outer.addStretch(1)

        self.image_combo.currentTextChanged.connect(self._on_image_chosen)
        self.model_combo.activated.connect(self._on_model_activated)
        self.device_combo.currentTextChanged.connect(lambda _: self.load_model())
        self.precision_combo.currentTextChanged.connect(lambda _: self.load_model())
        self.load_button.clicked.connect(lambda: self.load_model())
        self.sign_button.toggled.connect(self._set_negative_mode)
        self.candidate_buttons.idClicked.connect(self.select_candidate)
        self.commit_button.clicked.connect(lambda: self.commit())
        self.clear_button.clicked.connect(lambda: self.clear())
        self.edit_button.clicked.connect(lambda: self.edit_label())
        self.save_button.clicked.connect(self._save_dialog)
        self.cancel_button.clicked.connect(self.embedder.cancel)

    def _set_status(self, text: str) -> None:
        self.status.setText(text)

    # ----------------------------------------------------------- key bindings
    def _bind_keys(self, target, digits: bool = True, edit: bool = True) -> None:
        """Bind our keys on ``target`` (the viewer or one of our layers).

        napari looks keys up on the selected layer first, then on the viewer:
        on our layers our keys win; with another layer selected that layer's
        own keys win (C is auto-contrast on image layers). Digits are never
        bound on the viewer (they would shadow napari's mode keys), nor E on
        the labels layer (its erase key).
        """
        bindings = {
            "c": lambda *_: self.commit(),
            "Shift-C": lambda *_: self.clear(),
            "t": lambda *_: self.toggle_sign(),
        }
        if edit:
            bindings["e"] = lambda *_: self.edit_label()
        if digits:
            for k in range(3):
                bindings[str(k + 1)] = lambda *_, k=k: self.select_candidate(k)
        for key, func in bindings.items():
            try:
                target.bind_key(key, func, overwrite=True)
            except (TypeError, ValueError):  # older napari: no overwrite argument
                target.bind_key(key, func)
        if target is self.viewer:
            self._bound_keys = list(bindings)
        else:
            self._bound_layers.append(target)

    # ------------------------------------------------------------ image choice
    def _image_layers(self) -> list[Image]:
        return [lyr for lyr in self.viewer.layers if isinstance(lyr, Image) and not L.is_ours(lyr)]

    def _refresh_image_choices(self, event=None) -> None:
        names = [lyr.name for lyr in self._image_layers()]
        current = self.image_combo.currentText()
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
        if self.image_combo.currentText() != (self.image.name if self.image is not None else ""):
            self._on_image_chosen(self.image_combo.currentText())

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        if layer is self.image:
            self.image = None
            self._current_key = None
        for attr in ("points", "boxes", "labels"):
            if getattr(self, attr) is layer:
                setattr(self, attr, None)
        if layer in self.candidates:
            self.candidates = []
        self._refresh_image_choices()

    def set_image(self, layer: Image) -> None:
        """Annotate ``layer`` (also what choosing it in the widget does)."""
        if not isinstance(layer, Image):
            raise TypeError(f"the annotator works on image layers, got {type(layer).__name__}")
        if layer.name not in [lyr.name for lyr in self._image_layers()]:
            raise ValueError(f"image layer {layer.name!r} is not in this viewer")
        self.image_combo.setCurrentText(layer.name)
        if self.image is not layer:
            self._on_image_chosen(layer.name)

    def _on_image_chosen(self, name: str) -> None:
        layer = next((lyr for lyr in self._image_layers() if lyr.name == name), None)
        if layer is self.image:
            return
        self.image = layer
        self.book.clear_all()  # prompts live in the layers; results are per image
        self._current_slice = None
        self._current_key = None
        if layer is None:
            self._set_status("Add an image layer to annotate.")
            return
        try:
            self._check_image(layer)
        except ValueError as err:
            self.image = None
            show_warning(str(err))
            self._set_status(str(err))
            return
        self._ensure_layers()
        self._on_slice_changed()

    @staticmethod
    def _check_image(layer: Image) -> None:
        lead, plane = L.plane_shape(layer)
        if min(plane) < 2:
            raise ValueError(f"image {layer.name!r} has a plane of {plane} pixels; SAM needs at least 2 x 2")
        if layer.rgb and layer.data.shape[-1] not in (3, 4):
            raise ValueError(f"image {layer.name!r} has {layer.data.shape[-1]} colour channels; expected 3 or 4")

    def _ensure_layers(self) -> None:
        """Find or create the named layers for the current image (labels are never replaced)."""
        if self.image is None:
            return
        v, img = self.viewer, self.image
        active = v.layers.selection.active
        new_points = all(L._role(lyr).get("role") != "points" or L._role(lyr).get("image") != img.name for lyr in v.layers)
        self.labels = L.labels_layer(v, img)
        self.candidates = L.candidate_layers(v, img)
        self.boxes = L.boxes_layer(v, img)
        self.points = L.points_layer(v, img)
        for layer in (self.points, self.boxes, *self.candidates):
            if all(layer is not other for other in self._bound_layers):
                self._bind_keys(layer)
        if all(self.labels is not other for other in self._bound_layers):
            self._bind_keys(self.labels, digits=False, edit=False)
        for layer in (self.points, self.boxes):
            if all(layer is not other for other in self._connected):
                layer.events.data.connect(self._on_prompt_layer_changed)
                self._connected.append(layer)
        if self._on_points_press not in self.points.mouse_drag_callbacks:
            # First in the list, so it runs before napari's own "add point" callback.
            self.points.mouse_drag_callbacks.insert(0, self._on_points_press)
        self._apply_sign_default()
        if new_points:
            # A fresh start: ready to click on the image.
            self.points.mode = "add"
            v.layers.selection.active = self.points
        elif active is not None and active in v.layers:
            v.layers.selection.active = active

    # ------------------------------------------------------------ model choice
    def _model_is_local(self, name: str) -> bool:
        if name in ("", BROWSE):
            return False
        try:
            from ..model import zoo

            info = zoo.get_model_info(name)
            return getattr(info, "package_file", None) is not None or zoo.is_cached(name)
        except Exception:
            return False

    def _on_model_activated(self, index: int) -> None:
        if self.model_combo.itemText(index) == BROWSE:
            path, _ = QFileDialog.getOpenFileName(self, "SAM checkpoint", "", "Checkpoints (*.pth *.pt *.bin);;All files (*)")
            if not path:
                return
            self.model_combo.insertItem(self.model_combo.count() - 1, path)
            self.model_combo.setCurrentText(path)
        self.load_model()

    def load_model(self, name: str | None = None, device: str | None = None, precision: str | None = None):
        """Load a model in the background; labels and prompts stay as they are. Returns the task."""
        if name is not None:
            if self.model_combo.findText(name) < 0:
                self.model_combo.insertItem(self.model_combo.count() - 1, str(name))
            self.model_combo.setCurrentText(str(name))
        name = self.model_combo.currentText()
        if name in ("", BROWSE):
            self._set_status("Choose a model.")
            return None
        if device is not None:
            self.device_combo.blockSignals(True)
            self.device_combo.setCurrentText(device)
            self.device_combo.blockSignals(False)
        if precision is not None:
            self.precision_combo.blockSignals(True)
            self.precision_combo.setCurrentText(precision)
            self.precision_combo.blockSignals(False)
        spec = (name, self.device_combo.currentText(), self.precision_combo.currentText())
        self._load_serial += 1
        serial = self._load_serial
        self._set_status(f"Loading model {name} …")
        bar = open_progress(f"SAM: loading {name}")

        def finished():
            close_progress(bar)
            if self._load_serial == serial:
                self._loading = None

        task = Task(
            self.engine_factory, *spec,
            on_returned=lambda engine: self._on_model_loaded(serial, engine),
            on_errored=lambda err: self._on_model_failed(serial, name, err),
            on_finished=finished,
            name="napari-sam model loading",
        )
        self._loading = task
        task.start()
        return task

    def _on_model_loaded(self, serial: int, engine) -> None:
        if serial != self._load_serial:  # the user chose another model meanwhile
            return
        self.engine = engine
        self._current_key = None
        self.book.forget_results()  # logits of the previous model mean nothing to this one
        self._show_candidates(None)
        self._set_status(f"Model {getattr(engine, 'name', engine.model_id)} ready.")
        self._on_slice_changed()

    def _on_model_failed(self, serial: int, name: str, err: BaseException) -> None:
        if serial == self._load_serial:
            msg = f"SAM: could not load model {name}: {err}"
            show_error(msg)
            self._set_status(msg)

    # ---------------------------------------------------------------- slicing
    def current_slice(self) -> tuple[int, ...] | None:
        """Indices of the image's leading axes at the viewer's current position, or None."""
        if self.image is None:
            return None
        lead, _ = L.plane_shape(self.image)
        if not lead:
            return ()
        pos = np.asarray(self.image.world_to_data(self.viewer.dims.point), dtype=float)[: len(lead)]
        return tuple(int(np.clip(np.round(p), 0, n - 1)) for p, n in zip(pos, lead))

    def _plane_is_displayed(self) -> bool:
        dims = self.viewer.dims
        return dims.ndisplay == 2 and tuple(dims.displayed) == (dims.ndim - 2, dims.ndim - 1)

    def _read_plane(self, slice_index):
        data = self.image.data[0] if self.image.multiscale else self.image.data
        return np.asarray(data[tuple(slice_index)])

    def _intensity_range(self):
        img = self.image
        if id(img) not in self._ranges:
            lead, _ = L.plane_shape(img)
            data = img.data[0] if img.multiscale else img.data
            self._ranges[id(img)] = stack_intensity_range(data) if lead else None
        return self._ranges[id(img)]

    def _job(self, slice_index, prefetch=False) -> EmbedJob:
        plane = self._read_plane(slice_index)
        rng = self._intensity_range()
        key = EmbeddingKey(
            image=array_fingerprint(plane),
            slice_index=tuple(slice_index),
            model_id=self.engine.model_id,
            preprocessing=f"v{RULE_VERSION}:range={rng!r}",
        )
        label = f"{self.image.name} slice {tuple(slice_index)}" if slice_index else self.image.name
        return EmbedJob(key, self.engine, plane, rng, prefetch=prefetch, label=label)

    def _neighbours(self, slice_index) -> list[tuple[int, ...]]:
        if not slice_index:
            return []
        lead, _ = L.plane_shape(self.image)
        out = []
        for d in range(1, PREFETCH_DEPTH + 1):
            for sign in (1, -1):
                z = slice_index[-1] + sign * d
                if 0 <= z < lead[-1]:
                    out.append((*slice_index[:-1], z))
        return out

    def _on_slice_changed(self, event=None) -> None:
        if self.image is None or self._closed:
            return
        s = self.current_slice()
        if s != self._current_slice:
            self._current_slice = s
            self._show_slice_candidates()
        if self.engine is None:
            self._set_status("Load a model to start.")
            return
        if not self._plane_is_displayed():
            self._set_status("SAM works on the plane of the last two axes: switch to the 2D view with those axes shown.")
            return
        try:
            job = self._job(s)
        except Exception as err:  # unreadable data must not break the viewer
            show_error(f"SAM: cannot read slice {s} of {self.image.name!r}: {err}")
            return
        self._current_key = job.key
        if job.key in self.cache:
            self._refresh_prompts(force=True)
            self._prepare_decoder()
            self._schedule_prefetch()
        else:
            self._set_status(f"Embedding {job.label} …")
            # Started from the event loop, not from inside this event: closing the
            # viewer removes every layer at once, moving the slider on the way, and
            # an embedding started then would hold up napari's exit for seconds.
            QTimer.singleShot(0, lambda job=job: self._submit_if_still_wanted(job))

    def _submit_if_still_wanted(self, job: EmbedJob) -> None:
        if not self._closed and self.image is not None and job.key == self._current_key:
            self.embedder.submit(job)

    def _schedule_prefetch(self) -> None:
        """(Re)start the idle countdown after which neighbouring slices are embedded."""
        if self.prefetch_enabled and not self._closed and self._current_slice:
            self._prefetch_timer.start()

    def _prefetch_now(self) -> None:
        s = self._current_slice
        if self._closed or self.image is None or self.engine is None or not s or self.embedder.is_busy:
            return
        try:
            jobs = [self._job(n, prefetch=True) for n in self._neighbours(s)]
        except Exception:  # unreadable neighbours: prefetch is only a convenience
            return
        jobs = [j for j in jobs if j.key not in self.cache]
        if jobs:
            self.embedder.submit(jobs[0], jobs[1:])

    def _on_embedded(self, key: EmbeddingKey) -> None:
        if key != self._current_key:
            return  # a prefetch, or a slice no longer shown: used only when its key is wanted
        self._set_status(f"Slice {key.slice_index} embedded: place points or a box.")
        self._refresh_prompts(force=True)
        self._prepare_decoder()
        self._schedule_prefetch()

    def _prepare_decoder(self) -> None:
        """The decoder's prompt-independent work for the slice shown, now rather than at its first click."""
        prepare = getattr(self.engine, "prepare", None)  # optional: stand-in engines may not have it
        embedding = self.cache.get(self._current_key) if self._current_key is not None else None
        if prepare is None or embedding is None:
            return
        try:
            prepare(embedding)
        except Exception:  # only a head start: a failing decoder is reported at the click
            pass

    def _on_embed_failed(self, job: EmbedJob, err: BaseException) -> None:
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        msg = f"SAM: embedding {job.label} failed: {detail}"
        if not job.prefetch:
            show_error(msg)
        self._set_status(msg)

    def _on_busy(self, busy: bool) -> None:
        self.cancel_button.setEnabled(busy)

    def is_idle(self) -> bool:
        """No model loading and no embedding running or waiting (for tests and scripts)."""
        return self._loading is None and not self.embedder.is_busy

    # ----------------------------------------------------------------- prompts
    def _set_negative_mode(self, negative: bool) -> None:
        self.negative_mode = bool(negative)
        self.sign_button.setText(f"Points: {'negative' if negative else 'positive'} (T)")
        self._apply_sign_default()

    def _apply_sign_default(self) -> None:
        if self.points is not None:
            self.points.feature_defaults = {L.SIGN: "negative" if self.negative_mode else "positive"}

    def toggle_sign(self) -> None:
        """Key T: switch new points between positive and negative.

        In the points layer's select mode, T flips the selected points instead.
        """
        pts = self.points
        if pts is not None and str(pts.mode) == "select" and pts.selected_data:
            col = pts.features[L.SIGN].astype(object)
            self._set_signs(
                pts.selected_data, lambda i: "negative" if col.iloc[i] == "positive" else "positive"
            )
            self._refresh_prompts()
            return
        self.sign_button.setChecked(not self.negative_mode)

    def _on_points_press(self, layer, event):
        self._shift_click = "Shift" in {str(m) for m in getattr(event, "modifiers", ())} or any(
            getattr(m, "name", None) == "Shift" for m in getattr(event, "modifiers", ())
        )

    def _on_prompt_layer_changed(self, event=None) -> None:
        if self._closed:
            return
        action = str(getattr(event, "action", "")) if event is not None else ""
        if action.endswith("ing"):  # adding / changing / removing: wait for the final event
            return
        if self._muted:
            return
        if event is not None and event.source is self.points and action.endswith("added") and self._shift_click:
            self._shift_click = False
            self._set_signs(list(getattr(event, "data_indices", ()) or [len(self.points.data) - 1]), "negative")
        self._refresh_prompts()

    def _set_signs(self, indices, sign) -> None:
        """Set the sign ("positive"/"negative", or a function of the index) of some points."""
        features = self.points.features.copy()
        col = features[L.SIGN].astype(object)
        for i in indices:
            col.iloc[int(i)] = sign(int(i)) if callable(sign) else sign
        features[L.SIGN] = col
        self.points.features = features
        self.points.refresh_colors()

    def _on_this_slice(self, coords: np.ndarray, s) -> np.ndarray:
        if len(coords) == 0 or not s:
            return np.ones(len(coords), bool)
        lead = np.round(coords[:, : len(s)]).astype(int)
        return np.all(lead == np.asarray(s), axis=1)

    def read_prompt(self, s) -> Prompt:
        """Points and the last box placed on slice ``s``, in (x, y) pixels of the plane."""
        points = np.zeros((0, 2))
        labels = np.zeros(0, dtype=np.int64)
        box = None
        _, (H, W) = L.plane_shape(self.image)
        if self.points is not None and len(self.points.data):
            data = np.asarray(self.points.data)
            here = self._on_this_slice(data, s)
            xy = data[here][:, [-1, -2]]
            signs = np.asarray(self.points.features[L.SIGN].astype(object))[here]
            inside = (xy[:, 0] >= 0) & (xy[:, 0] <= W) & (xy[:, 1] >= 0) & (xy[:, 1] <= H)
            points = xy[inside]
            labels = np.where(signs[inside] == "negative", NEGATIVE, POSITIVE).astype(np.int64)
        if self.boxes is not None and len(self.boxes.data):
            types = list(self.boxes.shape_type)
            for shape, kind in zip(reversed(self.boxes.data), reversed(types)):
                shape = np.asarray(shape)
                if kind != "rectangle" or not self._on_this_slice(shape[:1], s).all():
                    continue
                ys, xs = shape[:, -2], shape[:, -1]
                box = [xs.min(), ys.min(), xs.max(), ys.max()]
                if box[2] < 0 or box[3] < 0 or box[0] > W or box[1] > H:
                    box = None
                    continue
                break
        return Prompt.make(points, labels, box)

    def _refresh_prompts(self, force: bool = False) -> None:
        """Decode the current slice's prompt if it changed (or ``force``) and show the candidates."""
        if self._prefetch_timer.isActive():
            self._prefetch_timer.start()  # the user is busy here: prefetch later
        s = self._current_slice
        if self.image is None or s is None:
            return
        request = self.book.update(s, self.read_prompt(s), force=force)
        if request is None:
            if self.book.get(s).candidates is None:
                self._show_candidates(None)
            return
        embedding = self.cache.get(self._current_key) if self._current_key is not None else None
        if embedding is None or self.engine is None or self._current_key.slice_index != tuple(s):
            self._set_status("Waiting for this slice's embedding …")
            return
        try:
            masks, iou, low_res = self.engine.decode(embedding, request)
        except Exception as err:
            show_error(f"SAM: could not segment this prompt: {err}")
            return
        cands = self.book.set_result(request, masks, iou, low_res)
        self._show_candidates(cands)

    # -------------------------------------------------------------- candidates
    def _show_slice_candidates(self) -> None:
        s = self._current_slice
        cands = self.book.get(s).candidates if (s is not None and s in self.book) else None
        self._show_candidates(cands)

    def _show_candidates(self, cands) -> None:
        """Write the candidates into the three layers.

        The layers keep their one-plane array; it is overwritten in place and
        refreshed, which is much cheaper in napari than assigning a new array
        (that re-computes the viewer's dimensions for every layer).
        """
        if not self.candidates or self.image is None:
            return
        lead, plane = L.plane_shape(self.image)
        shape = (1,) * len(lead) + plane
        for k, layer in enumerate(self.candidates):
            if self._current_slice is not None:
                L.place_on_slice(layer, self.image, self._current_slice)
            button = self.candidate_buttons.button(k)
            data = layer.data
            if not isinstance(data, np.ndarray) or data.shape != shape or not data.flags.writeable:
                layer.data = data = np.zeros(shape, dtype=np.uint8)
            if cands is None or k >= cands.count:
                if data.any():
                    data[...] = 0
                    layer.refresh()
                _rename(layer, f"{L.CANDIDATE_NAME} {k + 1}")
                button.setText(f"{k + 1}: –")
                continue
            chosen = k == cands.selected
            plane_view = data.reshape(plane)
            np.multiply(cands.masks[k], k + 1, out=plane_view, casting="unsafe")
            _rename(layer, f"{L.CANDIDATE_NAME} {k + 1}: IoU {cands.iou[k]:.2f}" + (" (selected)" if chosen else ""))
            if layer.visible != chosen:
                layer.visible = chosen  # becoming visible refreshes the layer
            elif chosen:
                layer.refresh()
            button.setText(f"{k + 1}: {cands.iou[k]:.2f}")
            if chosen:
                button.setChecked(True)

    def current_candidates(self):
        s = self._current_slice
        return self.book.get(s).candidates if (s is not None and s in self.book) else None

    def select_candidate(self, k: int) -> None:
        """Keys 1/2/3 (k = 0/1/2): choose which candidate a commit writes."""
        s = self._current_slice
        if s is None or self.current_candidates() is None:
            self._set_status("No candidates yet: place a point or a box.")
            return
        try:
            cands = self.book.select(s, int(k))
        except ValueError as err:
            self._set_status(str(err))
            return
        self._show_candidates(cands)

    # ------------------------------------------------------------------ commit
    def commit(self):
        """Key C: write the selected candidate into "SAM labels" (undoable). Returns the LabelChange."""
        s = self._current_slice
        cands = self.current_candidates()
        if cands is None or self.labels is None:
            self._set_status("Nothing to commit: place a prompt and wait for the candidates.")
            return None
        obj = self.book.get(s)
        chosen_id = obj.edit_id or (self.id_spin.value() or None)
        try:
            change = commit_mod.plan_commit(
                np.asarray(self.labels.data),
                cands.mask,
                s,
                chosen_id,
                overwrite=self.overwrite_check.isChecked(),
                replace=obj.edit_id is not None,
            )
        except (ValueError, TypeError) as err:
            show_warning(f"SAM: not committed: {err}")
            return None
        if change:
            self.labels.data_setitem(change.indices, change.new.astype(self.labels.data.dtype))
        self.labels.selected_label = change.object_id
        self.id_spin.setValue(0)
        self.clear()
        self._set_status(f"Committed object {change.object_id} ({change.n_changed} pixels changed).")
        return change

    def clear(self) -> None:
        """Key Shift-C: remove this slice's prompts and candidates; labels are not touched."""
        s = self._current_slice
        if s is None:
            return
        self._muted = True
        try:
            if self.points is not None and len(self.points.data):
                keep = ~self._on_this_slice(np.asarray(self.points.data), s)
                if not keep.all():
                    self.points.selected_data = set(np.flatnonzero(~keep).tolist())
                    self.points.remove_selected()
            if self.boxes is not None and len(self.boxes.data):
                doomed = [i for i, shp in enumerate(self.boxes.data) if self._on_this_slice(np.asarray(shp)[:1], s).all()]
                if doomed:
                    self.boxes.selected_data = set(doomed)
                    self.boxes.remove_selected()
        finally:
            self._muted = False
        self.book.clear(s)
        self._show_candidates(None)

    def edit_label(self, object_id: int | None = None) -> None:
        """Key E: the chosen label's mask (and box) on this slice becomes the prompt; commit replaces it."""
        s = self._current_slice
        if self.labels is None or s is None:
            return
        oid = int(object_id if object_id is not None else self.labels.selected_label)
        if oid < 1:
            self._set_status("Pick a label (not background) in SAM labels to edit.")
            return
        mask = commit_mod.object_mask(np.asarray(self.labels.data), s, oid)
        if not mask.any():
            show_info(f"SAM: label {oid} is not on this slice")
            return
        if self.engine is None:
            self._set_status("Load a model first.")
            return
        self.clear()
        self.book.start_edit(s, oid, mask_logits=self.engine.mask_prompt(mask), box=mask_box(mask))
        self._set_status(f"Editing object {oid}: add points to fix it, then commit (C) to replace it.")
        self._refresh_prompts(force=True)

    # -------------------------------------------------------------------- save
    def save_labels(self, path) -> list[str]:
        from ..writers import write_labels_tiff

        if self.labels is None:
            raise ValueError("there are no SAM labels to save yet")
        attrs = {"scale": self.labels.scale, "translate": self.labels.translate, "name": self.labels.name}
        return write_labels_tiff(str(path), np.asarray(self.labels.data), attrs)

    def _save_dialog(self) -> None:
        if self.labels is None:
            show_info("SAM: nothing to save yet")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save SAM labels", f"{self.labels.name}.labels.tif", "TIFF (*.tif *.tiff)")
        if not path:
            return
        try:
            written = self.save_labels(Path(path))
        except (OSError, ValueError, TypeError) as err:
            show_error(f"SAM: could not save labels: {err}")
            return
        show_info(f"SAM: labels saved to {written[0]}")

    # ------------------------------------------------------------------ close
    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop waiting for embeddings and disconnect from the viewer."""
        self._closed = True
        self._prefetch_timer.stop()
        self.embedder.close()
        # Keys and callbacks left on the viewer and layers would call into a closed widget.
        for target in (self.viewer, *self._bound_layers):
            keys = self._bound_keys if target is self.viewer else [*self._bound_keys, "1", "2", "3"]
            for key in keys:
                try:
                    target.bind_key(key, None)
                except (TypeError, ValueError, KeyError):
                    pass
        self._bound_keys = []
        self._bound_layers = []
        for layer in self._connected:
            disconnect_quietly(layer.events.data, self._on_prompt_layer_changed)
        self._connected = []
        if self.points is not None and self._on_points_press in self.points.mouse_drag_callbacks:
            self.points.mouse_drag_callbacks.remove(self._on_points_press)
        for emitter, slot in (
            (self.viewer.layers.events.inserted, self._refresh_image_choices),
            (self.viewer.layers.events.removed, self._on_layer_removed),
            (self.viewer.dims.events.current_step, self._on_slice_changed),
            (self.viewer.dims.events.ndisplay, self._on_slice_changed),
        ):
            disconnect_quietly(emitter, slot)


def _warm_up_progress_ui() -> None:
    """Show and close one napari progress bar now, while nothing runs.

    napari builds its progress widgets the first time a progress bar appears,
    which blocks the event loop for a few hundred milliseconds; without this
    the first embedding would freeze napari that long.
    """
    try:
        from napari.utils import progress

        with progress(total=0, desc="SAM Annotator ready"):
            pass
    except Exception:  # cosmetic: never let this break the widget
        pass


def _rename(layer, name: str) -> None:
    if layer.name != name:
        layer.name = name


def _devices() -> list[str]:
    out = ["auto", "cpu"]
    try:
        import torch

        if torch.cuda.is_available():
            out.append("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            out.append("mps")
    except Exception:
        pass
    return out
