"""The embedding cache rows of a dock: the folder, on/off for stacks, its size, and Clear cache.

The folder is the workspace's (one for every dock): what "Embed stack"
writes there is what the annotator reads.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPushButton, QWidget

from ..units import format_size
from ..volume import EmbeddingStore


class CacheRows:
    """``fail(text)`` reports what went wrong; ``busy()`` says whether a job of the dock runs now."""

    def __init__(self, parent: QWidget, form: QFormLayout, workspace, fail: Callable[[str], None],
                 busy: Callable[[], bool], confirm_clear: bool = True) -> None:
        self.parent, self.workspace, self.fail, self.busy, self.confirm_clear = parent, workspace, fail, busy, confirm_clear
        store = workspace.embeddings.store
        self.cache_edit = QLineEdit(str(store.folder) if store is not None else "")
        self.cache_edit.setToolTip("Folder where slice embeddings are kept between sessions (one file per slice); "
                                   "every SAM dock reads and writes the same folder.")
        self.cache_edit.editingFinished.connect(self.use_folder)
        form.addRow("Cache folder", self.cache_edit)
        self.disk_check = QCheckBox("keep stack embeddings on disk")
        self.disk_check.setChecked(workspace.store_stacks)
        self.disk_check.setToolTip("Off: embeddings of stacks stay in memory only and are computed again next time.")
        self.disk_check.toggled.connect(lambda on: setattr(workspace, "store_stacks", bool(on)))
        form.addRow("", self.disk_check)
        self.cache_label = QLabel()
        self.cache_label.setToolTip("Disk space used by the embeddings in the cache folder.")
        self.clear_button = QPushButton("Clear cache")
        self.clear_button.setToolTip("Delete every embedding in the cache folder (other files there are kept).")
        self.clear_button.clicked.connect(lambda: self.clear())
        row = QHBoxLayout()
        row.addWidget(self.cache_label, 1)
        row.addWidget(self.clear_button)
        form.addRow("Cache size", row)
        self.update_size()

    def store(self) -> EmbeddingStore | None:
        return self.workspace.embeddings.store

    def use_folder(self) -> bool:
        """Read and write the folder typed in (the per-user cache when empty)."""
        text = self.cache_edit.text().strip()
        try:
            self.workspace.embeddings.use_store(EmbeddingStore(text or None))
        except (ValueError, TypeError, OSError) as err:
            self.fail(f"cannot use {text!r} as the cache folder: {err}")
            return False
        finally:
            self.update_size()
        return True

    def update_size(self) -> None:
        store = self.store()
        try:
            self.cache_label.setText(f"{format_size(store.usage_bytes())} ({len(store)} slices)" if store is not None else "off")
        except OSError as err:
            self.cache_label.setText(f"unusable: {err}")

    def clear(self) -> bool:
        """Delete the cached embeddings (after a confirmation unless ``confirm_clear`` is False)."""
        store = self.store()
        if store is None:
            self.fail("no cache folder is set")
            return False
        if self.busy():
            self.fail("wait for the running job (or cancel it) before clearing the cache")
            return False
        if self.confirm_clear:
            answer = QMessageBox.question(self.parent, "Clear cache",
                                          f"Delete the {len(store)} cached slice embeddings in {store.folder}?")
            if answer != QMessageBox.StandardButton.Yes:
                return False
        try:
            store.clear()
        except OSError as err:
            self.fail(f"could not clear the cache: {err}")
            return False
        self.update_size()
        return True
