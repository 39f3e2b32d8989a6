"""SAM Everything's semi-automatic rows: accept the confident proposals, find the gaps, count what is done.

The user's loop on each image: the proposals come (by themselves on each new
series image, when the box is ticked), **K** accepts the confident ones,
the unsure ones are clicked (accept) or Alt+clicked (delete), and *Next gap*
walks the view through what nobody covered yet, biggest and brightest first,
where the annotator's clicks add the missing objects. The counter says how far
the image and the series are.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QCheckBox, QFormLayout, QHBoxLayout, QLabel, QPushButton

from ..session.gaps import find_gaps
from ..session.tally import count
from . import layers as L
from .events import disconnect_quietly
from .view_fit import camera_of

ACCEPT_KEY = "k"  # free in napari's keymaps and ours (hub.py, link.py)


def image_pixels(image, region) -> np.ndarray:
    """The grey values of ``region`` (a plane or stack index) of an image layer; RGB is averaged."""
    data = image.data[0] if image.multiscale else image.data
    pixels = np.asarray(data[region])
    return pixels.mean(axis=-1) if image.rgb else pixels


class SemiAutoRows:
    """The rows, acting through ``dock`` (the SAM Everything widget: its link, proposals and messages)."""

    def __init__(self, dock, form: QFormLayout) -> None:
        self.dock = dock
        self.accepted: dict[int, set] = {}  # id(labels layer) -> object ids that came from proposals
        self.gaps, self.gap_region, self.gap_next = None, None, 0
        self.pending = None  # the series image's session waiting for its model before proposing
        self.accept_sure_button = QPushButton("Accept confident (K)")
        self.accept_sure_button.setToolTip("Write every confident proposal (green) into SAM labels, one undo step; "
                                           "the unsure ones (orange) stay to be clicked or Alt+clicked.")
        self.accept_sure_button.clicked.connect(lambda: dock.accept_confident())
        form.addRow(self.accept_sure_button)
        self.gaps_button = QPushButton("Show gaps")
        self.gaps_button.setToolTip("Mark in 'SAM gaps' the regions with signal that no object or proposal covers, "
                                    "ranked by area x contrast.")
        self.gaps_button.clicked.connect(lambda: self.show_gaps())
        self.next_gap_button = QPushButton("Next gap")
        self.next_gap_button.setToolTip("Move the view to the next gap (the first: the biggest, brightest one).")
        self.next_gap_button.clicked.connect(lambda: self.next_gap())
        row = QHBoxLayout()
        row.addWidget(self.gaps_button)
        row.addWidget(self.next_gap_button)
        form.addRow(row)
        self.series_check = QCheckBox("Propose on each new series image")
        self.series_check.setToolTip("When a series dock opens an image, choose it here and run Find objects at once.")
        form.addRow("", self.series_check)
        self.counter = QLabel("")
        self.counter.setWordWrap(True)
        form.addRow(self.counter)
        self._count_timer = QTimer()
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(300)  # painting sends an event per stroke: count once it rests
        self._count_timer.timeout.connect(self.update_count)
        self._watched = None
        dock.hub.series_image_opened.connect(self._on_series_image)
        try:
            dock.viewer.bind_key(ACCEPT_KEY, self._on_key, overwrite=True)
        except (TypeError, ValueError):  # older napari: no overwrite argument
            dock.viewer.bind_key(ACCEPT_KEY, self._on_key)

    def _on_key(self, viewer=None) -> None:
        self.dock.accept_confident()

    # ------------------------------------------------------------------ the counter
    def bind(self, link) -> None:
        """Count on ``link``'s SAM labels (None: nothing chosen)."""
        if self._watched is not None:
            for name in ("paint", "data", "labels_update"):
                emitter = getattr(self._watched.events, name, None)
                if emitter is not None:
                    disconnect_quietly(emitter, self._count_soon)
        self._watched = link.labels if link is not None else None
        if self._watched is not None:
            for name in ("paint", "data", "labels_update"):
                emitter = getattr(self._watched.events, name, None)
                if emitter is not None:
                    emitter.connect(self._count_soon)
        self.gaps = None
        self.update_count()

    def _count_soon(self, event=None) -> None:
        self._count_timer.start()

    def remember(self, labels, ids) -> None:
        self.accepted.setdefault(id(labels), set()).update(int(i) for i in ids)
        self.update_count()

    def update_count(self) -> None:
        link = self.dock.link
        if link is None or link.closed:
            self.counter.setText("")
            return
        region = self.dock.region(link.session.planes.is_stack)
        tally = count(np.asarray(link.labels.data[region]), self.accepted.get(id(link.labels), ()),
                      getattr(link.image, "metadata", None))
        self.counter.setText(tally.describe())

    # ------------------------------------------------------------------ gaps
    def show_gaps(self) -> int:
        """Find the gaps of the slice shown (or the stack) and draw them; returns how many."""
        link = self.dock.link
        if link is None or link.closed:
            self.dock.fail("choose an image first")
            return 0
        region = self.dock.region(link.session.planes.is_stack)
        covered = np.asarray(link.labels.data[region]) > 0
        proposals = self.dock.view.layer
        if proposals is not None and proposals in self.dock.viewer.layers:
            covered |= np.asarray(proposals.data[region]) > 0
        try:
            self.gaps = find_gaps(image_pixels(link.image, region), covered)
        except ValueError as err:
            self.dock.fail(str(err))
            return 0
        self.gap_region, self.gap_next = region, 0
        layer = L.gaps_layer(self.dock.viewer, link.image)
        data = np.zeros_like(layer.data)
        data[region] = self.gaps.labels
        layer.data = data
        n = len(self.gaps)
        self.dock.status.show_status(f"{n} gap{'s' if n != 1 else ''}: regions with signal that no object or proposal "
                                     "covers; Next gap shows them, biggest and brightest first." if n else
                                     "No gaps: every region with signal is covered by an object or a proposal.")
        return n

    def next_gap(self):
        """Centre the view on the next gap (found first if needed); returns it, or None."""
        if self.gaps is None and not self.show_gaps():
            return None
        gap = self._next_open_gap()
        if gap is None:
            self.dock.status.show_status("No gaps left: press Show gaps to look again.")
            return None
        image, viewer = self.dock.link.image, self.dock.viewer
        local = iter(gap.centre)
        index = [i if isinstance(i, int) else next(local) for i in self.gap_region]
        world = np.asarray(image.data_to_world(index), dtype=float)
        displayed = list(viewer.dims.displayed)
        offset = viewer.dims.ndim - len(world)
        for axis, value in enumerate(world):  # the slice (and time point) the gap is on
            if axis + offset not in displayed:
                viewer.dims.set_point(axis + offset, value)
        camera_of(viewer).center = tuple(world[[a - offset for a in displayed if a >= offset]])
        self.dock.status.show_status(f"Gap {gap.rank} of {len(self.gaps)}: {gap.area} pixels, contrast "
                                     f"{gap.contrast:.2f}. Click the missing object with the annotator.")
        return gap

    def _next_open_gap(self):
        """The next gap in rank order (round and round) that the user has not filled since it was found."""
        labels = np.asarray(self.dock.link.labels.data[self.gap_region])
        for _ in range(len(self.gaps)):
            gap = self.gaps.gaps[self.gap_next % len(self.gaps)]
            self.gap_next += 1
            if (labels[self.gaps.labels == gap.rank] > 0).mean() < 0.5:
                return gap
        return None

    # ------------------------------------------------------------------ semi-automatic
    def _on_series_image(self, layer) -> None:
        """A series dock opened ``layer``: propose on it at once, when the box is ticked."""
        if not self.series_check.isChecked():
            return
        try:
            self.dock.images.choose(layer)
        except ValueError as err:
            self.dock.fail(f"the series image cannot be segmented here: {err}")
            return
        session = self.dock.session
        if session is None:
            return
        if session.engine is None:  # a new image has a new session: load the dock's model, then propose
            self.pending = session
            self.dock.models.load()
        else:
            self.dock.find()

    def on_engine(self, session, engine) -> None:
        """The model of ``session`` is in: propose now if a series image waited for it."""
        if engine is not None and self.pending is session:
            self.pending = None
            self.dock.find()

    def close(self) -> None:
        self._count_timer.stop()
        self.bind(None)
        disconnect_quietly(self.dock.hub.series_image_opened, self._on_series_image)
        try:
            self.dock.viewer.bind_key(ACCEPT_KEY, None)
        except (TypeError, ValueError, KeyError):
            pass
