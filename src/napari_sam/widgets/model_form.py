"""The model chooser every SAM dock shows: model, device, precision, Load.

It is a view of the session's model: choosing here loads through the
process's engine registry (a model is loaded once, whichever dock asks), and
the row always shows the model really in use, also after a load failed
("vit_b could not be downloaded; still using demo").
"""

from __future__ import annotations

import weakref

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QPushButton, QWidget

from ..model.device import PRECISIONS
from ..session import EngineSpec

BROWSE = "Browse…"
DEFAULT_MODEL = "demo"


def zoo_names() -> list[str]:
    from ..model.zoo import list_models

    return [info.name for info in list_models()]


def is_local(name: str) -> bool:
    """The model can be loaded without a download (shipped, cached, or a file)."""
    from pathlib import Path

    from ..model import zoo

    if name in ("", BROWSE):
        return False
    if Path(name).is_file():
        return True
    try:
        info = zoo.get_model_info(name)
    except (KeyError, ValueError):
        return False
    return info.package_file is not None or zoo.is_cached(name)


def devices() -> list[str]:
    import torch

    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


class ModelRows:
    """Form rows Model / Device / Precision / [Load model], bound to one session at a time."""

    # Local models made in this napari (fine-tuned ones): every model chooser lists them, also one opened later.
    _shared: list[str] = []
    _all: "weakref.WeakSet[ModelRows]" = weakref.WeakSet()

    def __init__(self, parent: QWidget, form: QFormLayout) -> None:
        self.parent = parent
        self.session = None
        self.model_combo = QComboBox()
        self.model_combo.addItems(zoo_names() + [BROWSE])
        # Checkpoint paths are long: the combo elides them instead of widening the dock.
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(12)
        ModelRows._all.add(self)
        self.add_choices(ModelRows._shared)
        self.model_combo.setCurrentText(DEFAULT_MODEL)
        self.model_combo.setToolTip("Model: a name from the model zoo (downloaded once), or Browse… for a checkpoint file")
        self.device_combo = QComboBox()
        self.device_combo.addItems(devices())
        self.device_combo.setToolTip("Where the model runs; auto = CUDA GPU, then Apple MPS, then CPU")
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(list(PRECISIONS))
        self.precision_combo.setToolTip(
            "Image encoder precision; auto = the fastest that keeps masks as fp32's on this machine (measured "
            "once): bf16 on CUDA and CPUs with AVX512-BF16/AMX, int8 on other CPUs where it pays, else fp32"
        )
        self.load_button = QPushButton("Load model")
        self.load_button.setToolTip("Load the chosen model (changing model, device or precision loads it too)")
        form.addRow("Model", self.model_combo)
        form.addRow("Device", self.device_combo)
        form.addRow("Precision", self.precision_combo)
        form.addRow("", self.load_button)
        self.model_combo.activated.connect(self._on_model_activated)
        self.device_combo.activated.connect(lambda _: self.load())
        self.precision_combo.activated.connect(lambda _: self.load())
        self.load_button.clicked.connect(lambda: self.load())

    def bind(self, session) -> None:
        if self.session is not None:
            self.session.engine_changed.disconnect(self._show_engine)
        self.session = session
        if session is not None:
            session.engine_changed.connect(self._show_engine)
            self._show_engine(session.engine)

    def choose(self, name: str | None = None, device: str | None = None, precision: str | None = None) -> None:
        if name is not None:
            if self.model_combo.findText(str(name)) < 0:
                self.model_combo.insertItem(self.model_combo.count() - 1, str(name))
            self.model_combo.setCurrentText(str(name))
        if device is not None:
            self.device_combo.setCurrentText(device)
        if precision is not None:
            self.precision_combo.setCurrentText(precision)

    def add_choices(self, paths) -> None:
        """List more local models (checkpoint files) in this chooser, before Browse…; the model in use stays."""
        for path in map(str, paths):
            if self.model_combo.findText(path) < 0:
                self.model_combo.insertItem(self.model_combo.count() - 1, path)
                self.model_combo.setItemData(self.model_combo.findText(path), path, Qt.ItemDataRole.ToolTipRole)

    @classmethod
    def share_choices(cls, paths) -> None:
        """List ``paths`` in every model chooser of this napari, the ones open now and the ones opened later."""
        paths = [str(p) for p in paths]
        cls._shared.extend(p for p in paths if p not in cls._shared)
        for rows in list(cls._all):
            try:
                rows.add_choices(paths)
            except RuntimeError:  # its dock was closed and Qt deleted the combo box
                cls._all.discard(rows)

    def spec(self) -> EngineSpec:
        return EngineSpec(self.model_combo.currentText(), self.device_combo.currentText(),
                          self.precision_combo.currentText())

    def load(self) -> None:
        """Ask the session for the model chosen here (in the background)."""
        if self.session is None:
            return
        if self.model_combo.currentText() in ("", BROWSE):
            self.session.say("Choose a model.", "warning")
            return
        self.session.load_engine(self.spec())

    def _on_model_activated(self, index: int) -> None:
        if self.model_combo.itemText(index) == BROWSE:
            path, _ = QFileDialog.getOpenFileName(
                self.parent, "SAM checkpoint", "", "Checkpoints (*.pth *.pt *.bin);;All files (*)"
            )
            if not path:
                self._show_engine(self.session.engine if self.session else None)
                return
            self.choose(path)
        self.load()

    def _show_engine(self, engine) -> None:
        """Show the model in use (or, with none yet, leave the user's choice)."""
        spec = self.session.engine_spec if self.session is not None else None
        if engine is None or spec is None:
            return
        for combo, value in ((self.model_combo, spec.model), (self.device_combo, spec.device),
                             (self.precision_combo, spec.precision)):
            combo.blockSignals(True)
            if combo is self.model_combo and combo.findText(value) < 0:
                combo.insertItem(combo.count() - 1, value)
            combo.setCurrentText(value)
            combo.blockSignals(False)
