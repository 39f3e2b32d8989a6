"""The "SAM Everything" dock: segment everything on the slice shown or the whole stack, then accept.

A view of :mod:`napari_sam.session.proposals`: it reads the settings from its
form, runs the search in the background (progress, Cancel; a stack's slices
appear as they are done), shows the result in a "SAM proposals" layer and
writes what the user accepts into "SAM labels" as one undoable step.
The threshold sliders re-filter the kept grid at once, without the model.
Click a proposal to accept it, Alt+click to delete it; confident proposals
(green) are accepted together with K (:mod:`.semiauto_rows`: gaps, counter,
proposing on each new series image).
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QComboBox, QFormLayout, QPushButton, QWidget

from ..auto.recommended import recommended_settings
from ..auto.settings import AutoSettings
from ..session import Status
from ..session.proposals import find_in_plane, find_in_stack
from .auto_form import SettingsRows
from .events import disconnect_quietly
from .hub import hub_for
from .image_choice import ImageChoice
from .job_rows import JobRows
from .model_form import ModelRows
from .proposal_view import ProposalView
from .semiauto_rows import SemiAutoRows
from .status import StatusLine, scrolling_body

PLANE, STACK = "Slice shown", "Whole stack"

class EverythingWidget(QWidget):
    """Dock widget "SAM Everything"."""

    def __init__(self, napari_viewer, workspace=None):
        super().__init__()
        self.viewer = napari_viewer
        self.hub = hub_for(napari_viewer, workspace)
        self.hub.attach(self)
        self.link = None
        self.proposals_of = None  # the session the proposals shown were found in
        self.view = ProposalView(napari_viewer, on_accept=self.accept, on_delete=self.delete)
        self._refilter_timer = QTimer()
        self._refilter_timer.setSingleShot(True)
        self._refilter_timer.setInterval(150)  # sliders move in steps: re-filter once they rest
        self._refilter_timer.timeout.connect(self.refilter)
        self._build_ui()
        self.images = ImageChoice(napari_viewer, self.image_combo, self._on_image_chosen)
        self.images.refresh()

    def _build_ui(self) -> None:
        body = scrolling_body(self)
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image to segment.")
        form.addRow("Image", self.image_combo)
        self.models = ModelRows(self, form)
        self.scope_combo = QComboBox()
        self.scope_combo.addItems([PLANE, STACK])
        self.scope_combo.setToolTip("Segment the slice shown, or every slice of the stack (objects linked through z).")
        form.addRow("Segment", self.scope_combo)
        self.form = SettingsRows(form, on_thresholds=self._refilter_timer.start)
        self.find_button = QPushButton("Find objects")
        self.find_button.setToolTip("Prompt the model with the grid of points and show what it finds as proposals.")
        self.find_button.clicked.connect(lambda: self.find())
        form.addRow(self.find_button)
        self.jobs = JobRows(form, self.hub.post, name="everything job", busy=self._set_busy, fail=self.fail,
                            what="Grid batches (one slice) or slices (a stack) done.")
        self.accept_button = QPushButton("Accept all")
        self.accept_button.setToolTip("Write every proposal into SAM labels as new objects (one undo step).")
        self.accept_button.clicked.connect(lambda: self.accept())
        self.discard_button = QPushButton("Clear proposals")
        self.discard_button.setToolTip("Remove the proposals; SAM labels are not touched.")
        self.discard_button.clicked.connect(lambda: self.discard())
        self.semi = SemiAutoRows(self, form)
        form.addRow(self.accept_button)
        form.addRow(self.discard_button)
        self.overwrite_check = QCheckBox("overwrite committed objects")
        self.overwrite_check.setToolTip("Off (default): accepted proposals never overwrite objects already in SAM labels.")
        form.addRow("", self.overwrite_check)
        self.status = StatusLine("K accepts the confident (green) proposals; click one to accept it, Alt+click to "
                                 "delete it.")
        body.addLayout(form)
        body.addWidget(self.status)
        body.addStretch(1)

    # ------------------------------------------------------------------ image, model, settings
    @property
    def proposals(self):
        """The Proposals shown, of ``proposals_of``."""
        return self.view.proposals

    @property
    def session(self):
        return self.link.session if self.link is not None and not self.link.closed else None

    def _on_image_chosen(self, image) -> None:
        if self.session is not None:
            disconnect_quietly(self.session.engine_changed, self._on_engine)
        self.view.unhook()
        self.link = self.hub.link_for(image) if image is not None else None
        self.models.bind(self.session)
        self.semi.bind(self.link)
        if self.session is not None:
            self.session.engine_changed.connect(self._on_engine)
            self._on_engine(self.session.engine)
            self.scope_combo.setCurrentText(STACK if self.session.planes.is_stack else PLANE)

    def _on_engine(self, engine) -> None:
        """A model's recommended settings (its zoo entry or checkpoint) go into the form."""
        spec = self.session.engine_spec if self.session is not None else None
        if engine is not None and spec is not None:
            try:
                self.form.show(AutoSettings().replace(**recommended_settings(name=spec.model)))
            except ValueError as err:
                self.fail(f"the model's recommended settings are not usable ({err}); Segment Anything's are shown")
        self.semi.on_engine(self.session, engine)

    def _unshown_settings(self) -> dict:
        """The model's recommended settings that have no row in the form (merging, gap filling): they apply too."""
        spec = self.session.engine_spec
        try:
            return recommended_settings(name=spec.model) if spec is not None else {}
        except ValueError:
            return {}  # said when the model was chosen (_on_engine); Segment Anything's apply

    # ------------------------------------------------------------------ finding
    def region(self, stack: bool) -> tuple:
        """The index of the slice shown, or of the stack through it, in the image (and its labels)."""
        # The stack is along z of (t, z, y, x): the axis just before the plane.
        return self.link.region(len(self.link.current_slice()) - 1 if stack else None)

    def find(self, scope: str | None = None) -> bool:
        """Start the search on the slice shown or the stack; False (with a message) when it cannot start."""
        session = self.session
        if session is None:
            self.fail("choose an image first")
            return False
        if scope is not None:
            self.scope_combo.setCurrentText(scope)
        stack = self.scope_combo.currentText() == STACK
        if stack and not session.planes.is_stack:
            self.fail(f"{session.planes.name!r} is a single plane, not a stack: segment the slice shown")
            return False
        region, work = self.region(stack), self.hub.workspace
        settings = {**self._unshown_settings(), **self.form.settings()}
        existing = np.asarray(self.link.labels.data[region]).copy()  # the user's objects now: not proposed
        self._show_proposals(None)
        if stack:
            def job():
                return find_in_stack(session, work, settings, region, existing=existing, progress=self.jobs.progress,
                                     should_cancel=self.jobs.should_cancel,
                                     on_slice=lambda p, z: self.hub.post(self._show_proposals, p))
        else:
            def job():
                return find_in_plane(session, work, settings, region[:-2], existing=existing,
                                     progress=self.jobs.progress, should_cancel=self.jobs.should_cancel)
        self.proposals_of = session
        if self.jobs.start(job, self._on_found, "Finding objects"):
            self.status.show_status("Finding objects …")
            return True
        return False

    def _on_found(self, proposals) -> None:
        self._show_proposals(proposals)
        n = len(proposals.ids)
        if proposals.cancelled:
            text = f"Cancelled after {len(proposals.slices_done)} slices: {n} proposals from those."
        elif n == 0:
            text = "Nothing was found at these settings: lower the thresholds, or use more points per side."
        else:
            text = (f"{n} proposals, {len(proposals.confident_ids)} confident (green): K accepts those; click an "
                    "unsure one (orange) to accept it, Alt+click to delete it.")
        self.status.show_status(text)

    def refilter(self) -> None:
        """The thresholds moved: select again from the kept grid (no model runs)."""
        if self.proposals is None or self.jobs.running:
            return
        try:
            self.proposals.refilter(**self.form.thresholds())
            self._show_proposals(self.proposals)
        except ValueError as err:
            self.fail(str(err))
            return
        self.status.show_status(f"{len(self.proposals.ids)} proposals at these thresholds, "
                                f"{len(self.proposals.confident_ids)} confident.")

    def _show_proposals(self, proposals) -> None:
        if self.link is not None and not self.link.closed:
            self.view.show(self.link.image, proposals)

    # ------------------------------------------------------------------ the user's answer
    def _usable(self) -> str | None:
        """Why the proposals shown cannot be accepted now, or None."""
        p = self.proposals
        if p is None or not p.ids:
            return "there are no proposals: press Find objects first"
        if self.jobs.running:
            return "the search is still running: wait for it or cancel it"
        if self.proposals_of is not self.session:
            return "these proposals were found on another image: press Find objects on this one"
        if not p.is_stack and tuple(p.index[:-2]) != tuple(self.link.current_slice()):
            return "these proposals are of another slice: go back to it, or press Find objects on this one"
        return None

    def accept(self, ids=None) -> bool:
        """Write proposals ``ids`` (None: all) into SAM labels as new objects, one undoable step."""
        why = self._usable()
        if why is not None:
            self.fail(f"nothing accepted: {why}")
            return False
        labels = self.link.labels
        try:
            change = self.proposals.accept(np.asarray(labels.data), ids, overwrite=self.overwrite_check.isChecked())
        except ValueError as err:
            self.fail(f"nothing accepted: {err}")
            return False
        if change:
            labels.data_setitem(change.indices, change.new.astype(labels.data.dtype))
        self.proposals.forget(ids, labels=np.asarray(labels.data))
        self._show_proposals(self.proposals)
        got = change.object_ids
        self.semi.remember(labels, got)
        text = (f"Accepted {len(got)} object(s) into {labels.name} (ids {got[0]}-{got[-1]}); Ctrl+Z in the labels layer "
                "undoes it." if got else "Nothing accepted: those proposals lie on committed objects.")
        self.status.show_status(text)
        return bool(got)

    def accept_confident(self) -> bool:
        """Write every confident proposal into SAM labels (one undo step); the unsure ones stay."""
        why = self._usable()
        if why is None and not self.proposals.confident_ids:
            why = "no proposal is confident: click the ones that are right, Alt+click the others"
        if why is not None:
            self.fail(f"nothing accepted: {why}")
            return False
        return self.accept(self.proposals.confident_ids)

    def delete(self, ids) -> None:
        """Remove proposals ``ids``: not proposed again at other thresholds."""
        if self.proposals is not None and not self.jobs.running:
            self.proposals.forget(ids)
            self._show_proposals(self.proposals)
            self.status.show_status(f"Deleted; {len(self.proposals.ids)} proposals left.")

    def discard(self) -> None:
        """Remove every proposal (SAM labels are not touched)."""
        if not self.jobs.running:
            self._show_proposals(None)
            self.status.show_status("Proposals cleared.")

    # ------------------------------------------------------------------ state
    def _set_busy(self, busy: bool) -> None:
        for button in (self.find_button, self.accept_button, self.discard_button, self.semi.accept_sure_button):
            button.setEnabled(not busy)

    def is_idle(self) -> bool:
        return not self.jobs.running and self.hub.is_idle()

    def fail(self, text: str) -> None:
        show_error(f"SAM Everything: {text}")
        self.status.show_status(Status(text, "error"))

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the running search and disconnect from the viewer; proposals not accepted are dropped."""
        self.jobs.close()
        self.semi.close()
        if self.session is not None:
            disconnect_quietly(self.session.engine_changed, self._on_engine)
        self.view.unhook()
        self.models.bind(None)
        self.images.close()
        self.hub.detach(self)
