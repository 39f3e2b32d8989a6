"""The "SAM Fine-tune" dock: train the model in use on a series' labelled images, then choose to use it.

A view of :mod:`napari_sam.finetune`: the run is the ``train`` command in its
own process (napari stays responsive, Cancel is immediate), polled here for
its step, loss and time left. A finished model joins every model chooser's
list and this dock's list of the series' models, with its before/after
scores on the held-out objects; it is used only when the user says so.
"""

from __future__ import annotations

from pathlib import Path

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QHeaderView, QLineEdit, QProgressBar, QPushButton,
    QSizePolicy, QSpinBox, QTableWidget, QTableWidgetItem, QWidget,
)

from ..finetune import FineTuneJob, list_models, series_of_image
from ..finetune.job import TRAIN_ENTRY
from ..session import Status
from .events import disconnect_quietly
from .hub import hub_for
from .image_choice import ImageChoice
from .model_form import ModelRows
from .status import StatusLine, scrolling_body

# The scores of the held-out report shown before/after, with what each means.
SCORES = (
    ("one_click_iou", "one-click IoU", "Mean IoU of each held-out object's mask after one click at its centre (higher is better)."),
    ("noc90", "NoC@90", "Clicks needed per object to reach IoU 0.9, at most 20 (lower is better)."),
    ("msa", "automatic mSA", "Mean segmentation accuracy of segment-everything on the held-out images (higher is better)."),
)
POLL_MS = 200


def _number(box, low, high, value, tip: str, step=None):
    box.setRange(low, high)
    if step is not None:
        box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tip)
    return box


class FineTuneWidget(QWidget):
    """Dock widget "SAM Fine-tune"."""

    def __init__(self, napari_viewer, workspace=None):
        super().__init__()
        self.viewer = napari_viewer
        self.hub = hub_for(napari_viewer, workspace)
        self.hub.attach(self)
        self.link = None
        self.job: FineTuneJob | None = None
        self.train_entry = TRAIN_ENTRY  # what the training process runs (tests: a stand-in)
        self._poll_timer = QTimer()
        self._poll_timer.setInterval(POLL_MS)
        self._poll_timer.timeout.connect(self._poll)
        self._build_ui()
        self.images = ImageChoice(napari_viewer, self.image_combo, self._on_image_chosen)
        self.images.refresh()
        self.hub.series_image_opened.connect(self._on_series_image)

    def _build_ui(self) -> None:
        body = scrolling_body(self)
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image whose model is fine-tuned (the model in use on it).")
        form.addRow("Image", self.image_combo)
        self.models = ModelRows(self, form)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("series folder (with labels/)")
        self.folder_edit.setToolTip("The series whose labelled images train the model; new models go to its models/ folder.")
        self.folder_edit.editingFinished.connect(lambda: self.set_series(self.folder_edit.text()))
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._choose_folder)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        form.addRow("Series", row)
        self.steps_spin = _number(QSpinBox(), 1, 100000, 300, "Training steps (4 images each).")
        form.addRow("Steps", self.steps_spin)
        self.minutes_spin = _number(QDoubleSpinBox(), 0, 24 * 60, 10, "At most this many minutes of training: it then stops "
                                    "and keeps the step reached (0: no limit).", step=1)
        self.minutes_spin.setSpecialValueText("no limit")
        form.addRow("Minutes", self.minutes_spin)
        self.held_out_spin = _number(QDoubleSpinBox(), 0, 0.5, 0.2, "Share of the labelled images kept out of training "
                                     "to measure the model before and after.", step=0.05)
        form.addRow("Held out", self.held_out_spin)
        self.start_button = QPushButton("Start fine-tuning")
        self.start_button.setToolTip("Train a new version of the model in use on the series' labels (in its own process).")
        self.start_button.clicked.connect(lambda: self.start())
        form.addRow(self.start_button)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop training now; nothing of this run is kept.")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.cancel())
        row = QHBoxLayout()
        row.addWidget(self.progress_bar, 1)
        row.addWidget(self.cancel_button)
        form.addRow(row)
        self.model_list = QComboBox()
        self.model_list.setToolTip("The series' fine-tuned models (where each came from in its tooltip).")
        self.model_list.currentIndexChanged.connect(lambda _: self._show_record())
        form.addRow("Fine-tuned", self.model_list)
        self.table = QTableWidget(len(SCORES), 2)
        self.table.setHorizontalHeaderLabels(["before", "after"])
        self.table.setVerticalHeaderLabels([label for _, label, _ in SCORES])
        for r, (_, _, tip) in enumerate(SCORES):
            self.table.verticalHeaderItem(r).setToolTip(tip)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # never widens the dock
        self.table.setMaximumHeight(self.table.verticalHeader().length() + self.table.horizontalHeader().height() + 6)
        form.addRow(self.table)
        self.use_button = QPushButton("Use the new model")
        self.use_button.setToolTip("Switch this image's model to the fine-tuned model chosen above.")
        self.use_button.setEnabled(False)
        self.use_button.clicked.connect(lambda: self.use_model())
        form.addRow(self.use_button)
        self.status = StatusLine("Choose a series with labelled images, then Start.")
        body.addLayout(form)
        body.addWidget(self.status)
        body.addStretch(1)

    # ------------------------------------------------------------------ image, model, series
    @property
    def session(self):
        return self.link.session if self.link is not None and not self.link.closed else None

    def _on_image_chosen(self, image) -> None:
        self.link = self.hub.link_for(image) if image is not None else None
        self.models.bind(self.session)

    def _on_series_image(self, layer) -> None:
        """A SAM Series dock opened an image: fine-tune on its series, from its model."""
        if any(layer is lyr for lyr in self.images.layers()):
            self.images.choose(layer)
        # The folder: the SAM Series dock writes it into the layer's metadata; else the image file's series.
        path = getattr(getattr(layer, "source", None), "path", None)
        folder = (getattr(layer, "metadata", None) or {}).get("series_folder") or (path and series_of_image(path))
        if folder and not (self.job is not None and self.job.running):
            self.set_series(folder)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Series folder", self.folder_edit.text())
        if folder:
            self.set_series(folder)

    def series(self) -> Path | None:
        text = self.folder_edit.text().strip()
        return Path(text).expanduser() if text else None

    def set_series(self, folder) -> None:
        self.folder_edit.setText(str(folder))
        self._list_models()

    def base_model(self) -> str:
        """The model in use on the chosen image (else the one chosen in the Model row)."""
        spec = self.session.engine_spec if self.session is not None else None
        return spec.model if spec is not None else self.models.model_combo.currentText()

    def _list_models(self, select: str | None = None) -> None:
        folder = self.series()
        records = list_models(folder / "models") if folder is not None else []
        ModelRows.share_choices([r.path for r in records])
        self.model_list.blockSignals(True)
        self.model_list.clear()
        for r in records:
            self.model_list.addItem(r.name, r)
            self.model_list.setItemData(self.model_list.count() - 1, (
                f"{r.path}\nfrom {r.base_model}, {r.steps} steps on {r.data}\n{r.date}, {r.minutes:g} min"
                + (f", {r.held_out:.0%} of the images held out" if r.held_out else "")), Qt.ItemDataRole.ToolTipRole)
        self.model_list.setCurrentIndex(len(records) - 1 if select is None else self.model_list.findText(select))
        self.model_list.blockSignals(False)
        self._show_record()

    def _show_record(self) -> None:
        record = self.model_list.currentData()
        for r, (key, _, _) in enumerate(SCORES):
            for c, when in enumerate(("before", "after")):
                value = record.scores(when).get(key) if record is not None else None
                self.table.setItem(r, c, QTableWidgetItem("–" if value is None else f"{value:.2f}" if key != "noc90"
                                                          else f"{value:.1f}"))
        self.use_button.setEnabled(record is not None and record.path != self.base_model())  # not the one in use

    # ------------------------------------------------------------------ the run
    def start(self) -> bool:
        """Start fine-tuning; False (with the reason shown) when it cannot start."""
        if self.job is not None and self.job.running:
            self._fail("a fine-tuning run is already running; wait for it or cancel it")
            return False
        folder = self.series()
        if folder is None:
            self._fail("choose the series folder to train on")
            return False
        minutes = self.minutes_spin.value() or None
        try:
            job = FineTuneJob(folder, self.base_model(), steps=self.steps_spin.value(),
                              held_out=round(self.held_out_spin.value(), 3), minutes=minutes, device="auto",
                              entry=self.train_entry)
            out = job.start()
        except ValueError as err:
            self._fail(f"not started: {err}")
            return False
        self.job = job
        self._set_busy(True)
        self.progress_bar.setRange(0, 0)  # busy until the first step line
        self.progress_bar.setFormat("starting …")
        self.status.show_status(f"Fine-tuning {job.base_model} into {out.name} …")
        self._poll_timer.start()
        return True

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.status.show_status("Cancelling …")

    def _poll(self) -> None:
        job = self.job  # set before the timer starts
        state = job.state()
        if state.total:
            left = "" if state.seconds_left is None else f" · {int(state.seconds_left) // 60}:{int(state.seconds_left) % 60:02d} left"
            self.progress_bar.setRange(0, state.total)
            self.progress_bar.setValue(state.step)
            self.progress_bar.setFormat(f"{state.step}/{state.total} · loss {state.loss:.2f}{left}")
            self.progress_bar.setToolTip(f"Training step {state.step} of {state.total}, loss {state.loss:.4f}{left}")
        if state.line and not state.finished:
            self.status.show_status(state.line)
        if state.finished and job.wait(0):
            self._poll_timer.stop()
            self._on_finished(state)

    def _on_finished(self, state) -> None:
        self._set_busy(False)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1 if state.phase == "done" else 0)
        if state.phase == "done":
            self._list_models(select=state.record.name)
            self.status.show_status(f"{state.record.name} is ready ({state.record.minutes:g} min): "
                                    "press Use the new model to switch to it.")
        elif state.phase == "cancelled":
            self.progress_bar.setFormat("cancelled")
            self.status.show_status("Cancelled: nothing was kept.")
        else:
            self.progress_bar.setFormat("failed")
            self._fail(f"fine-tuning failed: {state.error}")

    def use_model(self) -> bool:
        """Switch the chosen image's model to the fine-tuned model chosen in the list."""
        record = self.model_list.currentData()
        if record is None:
            self._fail("no fine-tuned model to use yet")
            return False
        if self.session is None:
            self._fail("choose an image first: the new model is used on it")
            return False
        self.models.choose(record.path)
        self.models.load()
        self.use_button.setEnabled(False)
        self.status.show_status(f"Using {record.name} on {self.session.planes.name}.")
        return True

    # ------------------------------------------------------------------ state
    def _set_busy(self, busy: bool) -> None:
        self.start_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def is_idle(self) -> bool:
        return not (self.job is not None and self.job.running) and not self._poll_timer.isActive() and self.hub.is_idle()

    def _fail(self, text: str) -> None:
        show_error(f"SAM Fine-tune: {text}")
        self.status.show_status(Status(text, "error"))

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """A running training stops (nothing of it is kept); the dock lets go of the viewer."""
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.job.wait(10)
        self._poll_timer.stop()
        disconnect_quietly(self.hub.series_image_opened, self._on_series_image)
        self.models.bind(None)
        self.images.close()
        self.hub.detach(self)
