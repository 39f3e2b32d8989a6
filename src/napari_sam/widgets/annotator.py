"""The "SAM Annotator" dock: click on an object, pick one of three candidates, commit it as a label.

A view of the image's :class:`~napari_sam.session.AnnotationSession` (through
its :class:`~.link.ImageLink`): the dock builds the form, passes the user's
choices and buttons on, and shows what the session says. Keys and mouse work
on the layers themselves (see ``link.py``), with or without this dock open.
"""

from __future__ import annotations

from pathlib import Path

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
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..session import EngineRegistry, EmbeddingSource, Workspace
from .hub import hub_for
from .image_choice import ImageChoice
from .model_form import ModelRows, is_local
from .status import HelpText, StatusLine, scrolling_body

KEYS_HELP = """\
Mouse (layer "SAM points", add mode): click = point on the object (green);
Shift-click = background point (magenta). Select layer "SAM boxes" (hidden while empty), rectangle mode: drag a box.
Keys (with a SAM layer selected): T toggle positive/negative points (and flip selected points),
1 / 2 / 3 pick a candidate, C commit, Shift-C clear prompts, E edit the label selected in "SAM labels".
Ctrl+Z / Ctrl+Shift+Z on "SAM labels" undo / redo a commit."""


def workspace_for_factory(engine_factory) -> Workspace:
    """A private workspace whose models come from ``engine_factory(name, device, precision)`` (tests, scripts)."""
    return Workspace(engines=EngineRegistry(factory=engine_factory), embeddings=EmbeddingSource())


class AnnotatorWidget(QWidget):
    """Dock widget "SAM Annotator"; ``napari_viewer`` is filled in by napari."""

    def __init__(self, napari_viewer, engine_factory=None, workspace: Workspace | None = None, autoload: bool = True):
        super().__init__()
        self.viewer = napari_viewer
        if engine_factory is not None:
            workspace = workspace_for_factory(engine_factory)
        self.hub = hub_for(napari_viewer, workspace)
        self.hub.attach(self)
        self.link = None
        self._build_ui()
        self.images = ImageChoice(napari_viewer, self.image_combo, self._on_image_chosen)
        self.images.refresh()
        if autoload and is_local(self.models.model_combo.currentText()):
            QTimer.singleShot(0, self._autoload)

    # ------------------------------------------------------------------ the form
    def _build_ui(self) -> None:
        self.setToolTip(KEYS_HELP)
        body = scrolling_body(self)
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("Image layer to annotate: 2D, RGB, 3D (Z, Y, X) or nD; the last two axes are the plane")
        form.addRow("Image", self.image_combo)
        self.models = ModelRows(self, form)
        body.addLayout(form)

        prompts = QGroupBox("Prompts")
        pl = QVBoxLayout(prompts)
        self.sign_button = QPushButton("Points: positive (T)")
        self.sign_button.setCheckable(True)
        self.sign_button.setToolTip('Whether new points in "SAM points" mark the object (green) or the background '
                                    "(magenta). Key T; Shift-click always places a background point.")
        pl.addWidget(self.sign_button)
        row = QHBoxLayout()
        self.candidate_buttons = QButtonGroup(self)
        for k in range(3):
            b = QRadioButton(f"{k + 1}: –")
            b.setToolTip(f'Candidate {k + 1} (key {k + 1}); its predicted IoU, also in the layer name "SAM candidate {k + 1}"')
            self.candidate_buttons.addButton(b, k)
            row.addWidget(b)
        pl.addLayout(row)
        body.addWidget(prompts)

        objects = QGroupBox("Objects")
        ol = QFormLayout(objects)
        self.id_spin = QSpinBox()
        self.id_spin.setRange(0, 2**31 - 1)
        self.id_spin.setSpecialValueText("new (max + 1)")
        self.id_spin.setToolTip("Id for the next committed object; 'new' = largest id in SAM labels + 1")
        self.overwrite_check = QCheckBox("overwrite other objects")
        self.overwrite_check.setToolTip("Off: a commit never changes pixels of other objects")
        self.commit_button = QPushButton("Commit (C)")
        self.commit_button.setToolTip('Write the selected candidate into "SAM labels" (undo: Ctrl+Z on that layer)')
        self.clear_button = QPushButton("Clear (Shift-C)")
        self.clear_button.setToolTip("Remove the prompts and candidates of this slice; labels are not touched")
        self.edit_button = QPushButton("Edit label (E)")
        self.edit_button.setToolTip('Edit the label selected in "SAM labels" (pick it with napari\'s picker, key L) on '
                                    "this slice: its mask and box become the prompt; add points, then commit to replace it")
        buttons = QHBoxLayout()
        for b in (self.commit_button, self.clear_button, self.edit_button):
            buttons.addWidget(b)
        self.save_button = QPushButton("Save labels…")
        self.save_button.setToolTip('Save "SAM labels" as TIFF (uint32, voxel size kept); name it *.labels.tif to reopen it with the voxel size')
        ol.addRow("Object id", self.id_spin)
        ol.addRow("", self.overwrite_check)
        ol.addRow(buttons)
        ol.addRow(self.save_button)
        body.addWidget(objects)

        self.cancel_button = QPushButton("Cancel embedding")
        self.cancel_button.setToolTip("Stop waiting for the embedding of this slice (one already running finishes and is kept)")
        self.cancel_button.setEnabled(False)
        self.status = StatusLine("Choose an image and a model.")
        help_label = HelpText(KEYS_HELP)
        body.addWidget(self.cancel_button)
        body.addWidget(self.status)
        body.addWidget(help_label)
        body.addStretch(1)

        self.sign_button.toggled.connect(lambda on: self.link and self.link.set_negative_mode(on))
        self.candidate_buttons.idClicked.connect(self.select_candidate)
        self.commit_button.clicked.connect(lambda: self.commit())
        self.clear_button.clicked.connect(lambda: self.clear())
        self.edit_button.clicked.connect(lambda: self.edit_label())
        self.save_button.clicked.connect(self._save_dialog)
        self.cancel_button.clicked.connect(lambda: self.session and self.session.cancel())

    # ------------------------------------------------------------------ image choice
    def set_image(self, layer) -> None:
        """Annotate ``layer`` (what choosing it in the dock does)."""
        self.images.choose(layer)

    def _on_image_chosen(self, layer) -> None:
        if layer is None:
            self._bind(None)
            self.status.show_status("Add an image layer to annotate.")
            return
        try:
            link = self.hub.link_for(layer)
        except (ValueError, TypeError) as err:  # an image SAM cannot work on (too small, 2 channels ...)
            self._bind(None)
            show_warning(f"SAM: {err}")
            self.status.show_status(str(err))
            return
        self._bind(link)

    def _bind(self, link) -> None:
        old = self.link
        if old is not None and not old.closed:
            s = old.session
            for signal, slot in ((s.status_changed, self.status.show_status), (s.activity_changed, self._on_activity),
                                 (old.buttons_changed, self._show_buttons), (old.sign_changed, self._show_sign)):
                signal.disconnect(slot)
        self.link = link
        self.models.bind(link.session if link else None)
        if link is None:
            return
        s = link.session
        s.status_changed.connect(self.status.show_status)
        s.activity_changed.connect(self._on_activity)
        link.buttons_changed.connect(self._show_buttons)
        link.sign_changed.connect(self._show_sign)
        self.status.show_status(s.status)
        self._show_sign(link.negative_mode)
        link._draw()
        if s.engine is None and not s.loading and self.hub.workspace.engines.loaded(self.models.spec()) is not None:
            self.models.load()  # the model this dock loaded before the image came

    def _autoload(self) -> None:
        if self.session is None:
            self.hub.preload(self.models.spec())  # ready when an image is added
        elif self.session.engine is None and not self.session.loading:
            self.models.load()

    # ------------------------------------------------------------------ views of the session
    def _on_activity(self) -> None:
        self.cancel_button.setEnabled(bool(self.session and self.session.embedding_wanted))

    def _show_buttons(self, texts) -> None:
        cands = self.current_candidates()
        for k, text in enumerate(texts):
            button = self.candidate_buttons.button(k)
            button.setText(text)
            if cands is not None and k == cands.selected:
                button.setChecked(True)

    def _show_sign(self, negative: bool) -> None:
        self.sign_button.blockSignals(True)
        self.sign_button.setChecked(negative)
        self.sign_button.setText(f"Points: {'negative' if negative else 'positive'} (T)")
        self.sign_button.blockSignals(False)

    # ------------------------------------------------------------------ what tests and scripts use
    @property
    def session(self):
        return self.link.session if self.link is not None else None

    @property
    def engine(self):
        """The model in use: the session's, or before any image the one this dock loaded."""
        if self.session is not None:
            return self.session.engine
        return self.hub.workspace.engines.loaded(self.models.spec())

    points = property(lambda self: self.link.points if self.link else None)
    boxes = property(lambda self: self.link.boxes if self.link else None)
    labels = property(lambda self: self.link.labels if self.link else None)
    candidates = property(lambda self: self.link.candidates if self.link else [])
    negative_mode = property(lambda self: bool(self.link and self.link.negative_mode))

    def load_model(self, name: str | None = None, device: str | None = None, precision: str | None = None) -> None:
        """Load a model in the background; labels and prompts stay as they are."""
        self.models.choose(name, device, precision)
        self.models.load()

    def current_slice(self):
        return self.link.current_slice() if self.link else None

    def current_candidates(self):
        return self.session.candidates() if self.session is not None else None

    def select_candidate(self, k: int) -> None:
        if self.link:
            self.link.select(k)

    def toggle_sign(self) -> None:
        if self.link:
            self.link.toggle_sign()

    def commit(self):
        """Key C: write the selected candidate into "SAM labels" (undoable); returns the LabelChange."""
        if self.link is None:
            return None
        change = self.link.commit(self.id_spin.value() or None, overwrite=self.overwrite_check.isChecked())
        if change is not None:
            self.id_spin.setValue(0)
        return change

    def clear(self) -> None:
        if self.link:
            self.link.clear()

    def edit_label(self, object_id: int | None = None) -> None:
        if self.link:
            self.link.edit_label(object_id)

    def save_labels(self, path) -> list[str]:
        if self.link is None:
            raise ValueError("there are no SAM labels to save yet")
        return self.link.save_labels(path)

    def _save_dialog(self) -> None:
        if self.link is None:
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

    def is_idle(self) -> bool:
        """No model loading and no embedding or decoding running or waiting (for tests and scripts)."""
        return self.hub.is_idle()

    # ------------------------------------------------------------------ close
    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the sessions' background work and disconnect from the viewer."""
        self._bind(None)
        self.images.close()
        self.hub.detach(self)
