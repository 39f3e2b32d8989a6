"""The "SAM Volume" dock: embed a whole stack once, then follow an object through z.

A view of the image's session, like the annotator (the two share the model,
the embeddings and "SAM labels"). Long work runs in a background lane, one job
at a time (the encoder already keeps every CPU core busy); Cancel stops it
after the current slice. Propagate, Propagate all and Correct are its
propagation rows (``propagation_rows.py``): each result is one undoable edit of
SAM labels that keeps strokes painted while the job ran.
"""

from __future__ import annotations

from napari.layers import Image
from napari.utils.notifications import show_error
from qtpy.QtWidgets import QComboBox, QFormLayout, QPushButton, QSpinBox, QWidget

from ..session import Status
from ..volume import StackEmbeddings, embed_stack
from .cache_form import CacheRows
from .events import disconnect_quietly
from .hub import hub_for
from .image_choice import ImageChoice
from .job_rows import JobRows
from .model_form import ModelRows
from .propagation_rows import REGROWTH_LIMIT, PropagationRows  # noqa: F401 (REGROWTH_LIMIT: the dock's name)
from .status import StatusLine, scrolling_body

_LABEL_MAX = 2**31 - 1  # QSpinBox holds a C int


def stack_axes(layer: Image) -> int:
    """Number of axes before a slice's own (rows, columns[, channels]) axes."""
    return layer.data.ndim - (3 if layer.rgb else 2)


class VolumeWidget(QWidget):
    """Dock widget "SAM Volume"; ``confirm_clear=False`` clears the cache without asking (scripts, tests)."""

    def __init__(self, napari_viewer, workspace=None, confirm_clear: bool = True):
        super().__init__()
        self.viewer = napari_viewer
        self.confirm_clear = confirm_clear
        self.hub = hub_for(napari_viewer, workspace)
        self.hub.attach(self)
        self.link = None
        self.last_embed = None  # EmbedResult of the last "Embed stack"
        self.last_propagation = None  # PropagationResult of the last "Propagate"
        self._build_ui()
        self.images = ImageChoice(napari_viewer, self.image_combo, self._on_image_chosen,
                                  accept=lambda layer: stack_axes(layer) >= 1)
        self.images.refresh()
        self.cache.update_size()

    def _build_ui(self) -> None:
        body = scrolling_body(self)
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The 3D (or 4D) image whose slices are embedded and segmented.")
        form.addRow("Image", self.image_combo)
        self.axis_spin = QSpinBox()
        self.axis_spin.setToolTip("The axis walked through slice by slice (default: the one just before rows and "
                                  "columns, z of (t, z, y, x)). Other leading axes (time) are taken at the position shown.")
        form.addRow("Slice axis", self.axis_spin)
        self.models = ModelRows(self, form)
        self.cache = CacheRows(self, form, self.hub.workspace, self._fail, lambda: self.jobs.running, self.confirm_clear)
        self.embed_button = QPushButton("Embed stack")
        self.embed_button.setToolTip("Compute the embedding of every slice in the background; slices already cached are skipped.")
        self.embed_button.clicked.connect(lambda: self.embed())
        form.addRow(self.embed_button)
        self.prop = PropagationRows(self, form)
        self.label_spin, self.iou_spin = self.prop.label_spin, self.prop.iou_spin
        self.regrowth_check, self.propagate_button = self.prop.regrowth_check, self.prop.propagate_button
        self.jobs = JobRows(form, self.hub.post, name="volume job", busy=self._set_busy, fail=self._fail)
        self.progress_bar, self.cancel_button = self.jobs.progress_bar, self.jobs.cancel_button
        self.status = StatusLine("")
        body.addLayout(form)
        body.addWidget(self.status)
        body.addStretch(1)

    # ------------------------------------------------------------------ image and session
    @property
    def image(self) -> Image | None:
        return self.images.chosen

    @property
    def session(self):
        return self.link.session if self.link is not None and not self.link.closed else None

    def set_image(self, layer) -> None:
        """Choose ``layer``; a 2D image is refused with a message."""
        if layer not in self.viewer.layers:
            raise ValueError(f"layer {layer.name!r} is not in this viewer")
        if not isinstance(layer, Image) or stack_axes(layer) < 1:
            self._fail(f"{layer.name!r} is a single 2D image, not a stack: open a 3D stack (slices, rows, columns)")
            return
        self.images.choose(layer)

    def load_model(self, name: str | None = None, device: str | None = None, precision: str | None = None) -> None:
        """Load a model for the chosen image's session in the background (shared with SAM Annotator)."""
        self.models.choose(name, device, precision)
        self.models.load()

    def _on_image_chosen(self, image) -> None:
        if self.link is not None and not self.link.closed:
            disconnect_quietly(self.link.labels.events.selected_label, self._on_selected_label)
        self.link = self.hub.link_for(image) if image is not None else None
        self.models.bind(self.session)
        n = stack_axes(image) if image is not None else 1
        name = image.name if image is not None else ""
        if self.axis_spin.property("for_image") != name:
            self.axis_spin.setRange(0, max(0, n - 1))
            self.axis_spin.setValue(max(0, n - 1))  # z of (t, z, y, x)
            self.axis_spin.setProperty("for_image", name)
        if self.link is not None:
            self.link.labels.events.selected_label.connect(self._on_selected_label)
            self._on_selected_label()

    def _on_selected_label(self, event=None) -> None:
        if self.link is not None and 0 < int(self.link.labels.selected_label) <= _LABEL_MAX:
            self.label_spin.setValue(int(self.link.labels.selected_label))

    def _stack(self) -> StackEmbeddings:
        """The stack through the position shown along the chosen axis (ValueError saying what is missing)."""
        if self.session is None:
            raise ValueError("choose a 3D image layer (2D images have no slices to walk through)")
        return self.hub.workspace.stack_embeddings(self.session, self._image_index())

    # ------------------------------------------------------------------ jobs
    def is_idle(self) -> bool:
        """No job of this dock running or waiting to report, and its session idle."""
        return not self.jobs.running and self.hub.is_idle()

    def _start(self, fn, done, what: str) -> bool:
        if self.jobs.start(fn, done, what):
            self.status.show_status(f"{what} …")
            return True
        return False

    def _set_busy(self, busy: bool) -> None:
        for button in (self.embed_button, *self.prop.buttons, self.cache.clear_button):
            button.setEnabled(not busy)
        if not busy:
            self.cache.update_size()

    def _progress(self, done: int, total: int) -> None:  # worker thread
        self.jobs.progress(done, total)

    def cancel(self) -> None:
        """Ask the running job to stop after the current slice."""
        self.jobs.cancel()

    def _fail(self, text: str) -> None:
        show_error(f"SAM Volume: {text}")
        self.status.show_status(Status(text, "error"))

    def embed(self) -> bool:
        """Embed every slice of the chosen stack in the background; False (with a message) when it cannot start."""
        try:
            stack = self._stack()
        except ValueError as err:
            self._fail(f"cannot embed the stack: {err}")
            return False
        job = lambda: embed_stack(stack.predictor, stack, progress=self._progress, should_cancel=self.jobs.should_cancel,
                                  keep=False)  # noqa: E731
        return self._start(job, self._on_embedded, "Embedding the stack")

    def _on_embedded(self, result) -> None:
        self.last_embed = result
        done = len(result.computed) + len(result.loaded)
        text = f"{done} of {result.total} slices embedded ({len(result.computed)} computed, {len(result.loaded)} from the cache)"
        self.status.show_status(text + ("; cancelled: press Embed stack again to go on." if result.cancelled else "."))
        self._warn_store()

    def _warn_store(self) -> None:
        err = self.hub.workspace.embeddings.store_error
        if err is not None:
            self.status.show_status(f"{self.status.toolTip()} {err}; embeddings were kept in memory only.")

    def propagate(self) -> bool:
        """Propagate the chosen object id through the stack in the background."""
        return self.prop.propagate()

    def propagate_all(self) -> bool:
        """Propagate every object drawn on the slice shown, one-to-one."""
        return self.prop.propagate_all()

    def correct(self) -> bool:
        """The candidate on the slice shown fixes the chosen object there; re-propagated both ways."""
        return self.prop.correct()

    def _image_index(self) -> tuple:
        """The index that takes this stack out of the labels: the walked axis whole, the others as shown."""
        return self.link.region(self.axis_spin.value())

    # ------------------------------------------------------------------ cache
    def store(self):
        return self.cache.store()

    def clear_cache(self) -> bool:
        if not self.cache.clear():
            return False
        self.status.show_status(f"Cache {self.store().folder} cleared.")
        return True

    # ------------------------------------------------------------------ close
    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the running job and disconnect from the viewer."""
        self.jobs.close()
        self.models.bind(None)
        self.images.close()
        if self.link is not None and not self.link.closed:
            disconnect_quietly(self.link.labels.events.selected_label, self._on_selected_label)
        self.hub.detach(self)
