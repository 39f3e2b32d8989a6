"""The "SAM Series" dock: annotate a folder of images one after the other, labels saved as you go.

A view of :class:`napari_sam.series.ImageSeries`: Open folder… lists the
images; Previous / Next (keys Page Up / Page Down, or a click in the list)
shows one as an image layer (replacing the previous one and its SAM layers)
with its saved labels in "SAM labels". It resumes where the user stopped. Labels
are saved by an :class:`~napari_sam.series.Autosaver` driven by a QTimer:
1.5 s after the last edit, and always before another image is shown, when
the dock or napari's window closes, or when napari quits. A failed save
keeps the image on screen (switching would drop the unsaved labels).
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QCoreApplication, QEvent, QTimer
from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QLabel, QListWidget, QPushButton, QWidget

from ..series import Autosaver, ImageSeries
from ..session import Status
from .events import disconnect_quietly
from .hub import hub_for
from .series_layers import keep_users_labels, remove_with_its_layers
from .status import StatusLine, scrolling_body

AUTOSAVE_DELAY_S = 1.5
DONE_MARK = "\u2713 "  # before the names of the images marked done in the list


class SeriesWidget(QWidget):
    """Dock widget "SAM Series"."""

    def __init__(self, napari_viewer, workspace=None):
        super().__init__()
        self.viewer = napari_viewer
        self.hub = hub_for(napari_viewer, workspace)
        self.hub.attach(self)
        self.series: ImageSeries | None = None
        self.index: int | None = None  # the image shown
        self.layer = None  # its image layer
        self.labels = None  # its "SAM labels" layer
        self.saver: Autosaver | None = None
        self._closed = False
        self._watched_window = None
        self._timer = QTimer()
        self._timer.setInterval(250)  # cheap: a tick only looks at the clock unless a save is due
        self._timer.timeout.connect(lambda: self.saver is not None and self.saver.tick())
        self._build_ui()
        napari_viewer.layers.events.removed.connect(self._on_layer_removed)
        # Keys napari leaves free, on the viewer: they work whichever layer is selected (unless it binds them).
        self._keys = {"PageDown": lambda *_: self.step(1), "PageUp": lambda *_: self.step(-1)}
        for key, func in self._keys.items():
            try:
                napari_viewer.bind_key(key, func, overwrite=True)
            except (TypeError, ValueError):  # older napari: no overwrite argument
                napari_viewer.bind_key(key, func)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    def _build_ui(self) -> None:
        body = scrolling_body(self)
        self.open_button = QPushButton("Open folder…")
        self.open_button.setToolTip("A folder of TIFF images (or with images/ inside); labels are saved in its labels/")
        self.open_button.clicked.connect(lambda: self.open_folder())
        self.counter = QLabel("No series open")
        self.image_list = QListWidget()
        self.image_list.setToolTip("Click an image to show it; \u2713 marks those done")
        self.image_list.itemClicked.connect(lambda item: self.go(self.image_list.row(item)))
        self.previous_button = QPushButton("Previous")
        self.previous_button.setToolTip("Save and show the previous image (key Page Up)")
        self.previous_button.clicked.connect(lambda: self.step(-1))
        self.next_button = QPushButton("Next")
        self.next_button.setToolTip("Save and show the next image (key Page Down)")
        self.next_button.clicked.connect(lambda: self.step(1))
        buttons = QHBoxLayout()
        buttons.addWidget(self.previous_button)
        buttons.addWidget(self.next_button)
        self.done_check = QCheckBox("done")
        self.done_check.setToolTip("Mark this image as fully annotated (counted in the series)")
        self.done_check.toggled.connect(self._on_done)
        self.status = StatusLine("Open a folder of images to annotate them one after the other.")
        for item in (self.open_button, self.counter, self.image_list):
            body.addWidget(item)
        body.addLayout(buttons)
        body.addWidget(self.done_check)
        body.addWidget(self.status)
        self._update()

    # ------------------------------------------------------------------ the folder
    def open_folder(self, folder=None) -> bool:
        """Open ``folder`` (asked for when None) at the image where the user stopped; False on failure."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Open a folder of images")
            if not folder:
                return False
        if not self._leave_image():
            return False
        # The series open here first lets go of its lock: opening the same folder again must not find it held.
        self._remove_layers()
        self._close_series()
        self._update()
        try:
            series = ImageSeries(Path(folder))
        except (ValueError, OSError) as err:
            self._fail(str(err))
            return False
        self.series = series
        self.image_list.addItems(series.names)
        self.go(series.current)
        notes = []
        if series.read_only:
            notes.append(f"Read-only: {series.read_only_reason}.")
        if series.skipped:
            notes.append(f"{len(series.skipped)} file(s) skipped: " + "; ".join(f"{n}: {r}" for n, r in series.skipped))
        if notes:
            show_warning("SAM Series: " + " ".join(notes))
            self.status.show_status(Status(" ".join(notes), "warning"))
        return True

    def step(self, delta: int) -> bool:
        if self.series is None or self.index is None:
            return False
        target = self.index + delta
        return 0 <= target < len(self.series) and self.go(target)

    def go(self, i: int) -> bool:
        """Show image ``i`` with its saved labels, after saving the one shown; False when it cannot."""
        series = self.series
        if series is None or not self._leave_image():
            return False
        try:
            image, labels = series.read_image(i), series.read_labels(i)
        except (ValueError, OSError) as err:
            self._fail(str(err))
            self._update()
            return False
        self._remove_layers()
        for kept in keep_users_labels(self.viewer):
            show_warning(f"SAM Series: your earlier labels layer is kept as {kept!r}; the series uses its own.")
        name, spatial = series.names[i], series.labels_shape(i)
        self.layer = self.viewer.add_image(image, name=name, rgb=image.ndim > len(spatial), scale=series.image_scale(i))
        link = self.hub.link_for(self.layer)
        self.labels = link.labels
        self.labels.data = labels.astype(self.labels.data.dtype, copy=False)
        self.labels.events.paint.connect(self._on_edit)
        self.labels.events.data.connect(self._on_edit)
        self.index = i
        try:
            series.go(i)
        except OSError as err:  # only the resume point is lost: the labels are saved on their own
            self._fail(f"where you stopped could not be saved ({err}); the labels are saved as usual")
        if not series.read_only:
            self.saver = Autosaver(self._save, AUTOSAVE_DELAY_S, on_error=lambda err: self._fail(str(err)),
                                   fingerprint=self._fingerprint)
            self._timer.start()
        self._update()
        if not series.read_only:
            self.status.show_status(f"{name}: labels are saved to labels/{series.labels_path(i).name} as you work.")
        self.hub.series_image_opened.emit(self.layer)
        return True

    # ------------------------------------------------------------------ saving
    def _fingerprint(self) -> int:
        return zlib.crc32(np.ascontiguousarray(self.labels.data)) if self.labels is not None else 0

    def _on_edit(self, event=None) -> None:
        if self.saver is not None:
            self.saver.changed()

    def _save(self) -> None:
        labels = self.labels
        saved = self.series.save_labels(self.index, np.asarray(labels.data), scale=tuple(labels.scale),
                                        translate=tuple(labels.translate))
        if saved.conflict:
            show_warning(f"SAM Series: {saved.message}")
            if not self._closed:
                self.status.show_status(Status(saved.message, "warning"))

    def flush(self) -> bool:
        """Save the labels shown now if they changed; True when nothing is left unsaved."""
        return self.saver is None or self.saver.flush()

    def _leave_image(self) -> bool:
        """Save before another image replaces this one; a failed save keeps it (and says why)."""
        if self.flush():
            return True
        self._fail(f"stayed on {self.layer.name}: {self.saver.last_error}")
        return False

    def _remove_layers(self) -> None:
        """The previous series image and the SAM layers made for it (its labels are saved by now)."""
        old, self.layer, self.saver = self.layer, None, None
        self._timer.stop()
        if self.labels is not None:
            disconnect_quietly(self.labels.events.paint, self._on_edit)
            disconnect_quietly(self.labels.events.data, self._on_edit)
            self.labels = None
        if old is not None:
            remove_with_its_layers(self.viewer, old)

    def _on_layer_removed(self, event) -> None:
        """The user removed the series image or its labels: save what they held, then let them go."""
        if event.value is not None and event.value in (self.layer, self.labels):
            self.flush()
            self._remove_layers()
            self.index = None
            self._update()

    # ------------------------------------------------------------------ the counter and done
    def _on_done(self, checked: bool) -> None:
        if self.series is not None and self.index is not None and checked != self.series.is_done(self.index):
            try:
                self.series.mark_done(self.index, checked)
            except OSError as err:
                self._fail(f"the done mark could not be saved: {err}")
            self._update()

    def _update(self) -> None:
        series, index = self.series, self.index
        has_image = series is not None and index is not None
        if has_image and self.layer is not None:  # what the other docks read: the folder, and images done
            self.layer.metadata.update(series_folder=str(series.folder),
                                       napari_sam_series={"done": series.done_count, "total": len(series)})
        self.counter.setText(series.counter_text(index) if has_image else "No series open" if series is None
                             else f"{len(series)} images, {series.done_count} done")
        if series is not None:
            for row, name in enumerate(series.names):
                self.image_list.item(row).setText((DONE_MARK if series.is_done(row) else "") + name)
            if has_image:
                self.image_list.setCurrentRow(index)
        self.previous_button.setEnabled(has_image and index > 0)
        self.next_button.setEnabled(has_image and index < len(series) - 1)
        self.done_check.setEnabled(has_image)
        self.done_check.blockSignals(True)
        self.done_check.setChecked(bool(has_image and series.is_done(index)))
        self.done_check.blockSignals(False)

    def _fail(self, text: str) -> None:
        show_error(f"SAM Series: {text}")
        if not self._closed:  # at napari's quit the dock's Qt widgets may be gone: the notification is enough
            self.status.show_status(Status(text, "error"))

    # ------------------------------------------------------------------ close
    def is_idle(self) -> bool:
        return self.hub.is_idle()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt name)
        # napari's window closing does not close its docks: watch it, to save before it goes.
        top = self.window()
        if top is not self and top is not self._watched_window:
            top.installEventFilter(self)
            self._watched_window = top
        super().showEvent(event)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if obj is self._watched_window and event.type() == QEvent.Type.Close:
            self.flush()
        return False

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.shutdown()
        super().closeEvent(event)

    def _close_series(self, clear_list: bool = True) -> None:
        if self.series is not None:
            self.series.close()
        self.series, self.index = None, None
        if clear_list:
            self.image_list.clear()

    def shutdown(self) -> None:
        """Save the labels shown and let another window write to the series."""
        if self._closed:
            return
        self._closed = True  # from here on, messages go to napari's notifications only
        self._timer.stop()
        self.flush()
        self._close_series(clear_list=False)  # napari may have deleted the dock's Qt widgets already
        disconnect_quietly(self.viewer.layers.events.removed, self._on_layer_removed)
        for key in self._keys:
            try:
                self.viewer.bind_key(key, None)
            except (TypeError, ValueError, KeyError):
                pass
        app = QCoreApplication.instance()
        if app is not None:
            disconnect_quietly(app.aboutToQuit, self.shutdown)
        if self._watched_window is not None:
            try:
                self._watched_window.removeEventFilter(self)
            except RuntimeError:  # the window is deleted already
                pass
            self._watched_window = None
        self.hub.detach(self)
