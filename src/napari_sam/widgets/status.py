"""Small pieces every SAM dock uses: the status line, a scrolling dock body, sizes in words."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

_COLOURS = {"error": "#ff6b6b", "warning": "#f0b45a"}


class StatusLine(QLabel):
    """One word-wrapped line of state that never widens the dock (long paths wrap at their slashes)."""

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Ignored: the label takes the width the dock has instead of asking for the width of its text.
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        self.setMinimumWidth(10)
        self.setToolTip("What the SAM session is doing, or why it cannot go on")
        self.show_status(text)

    def show_status(self, status) -> None:
        """A :class:`~napari_sam.session.Status` (or plain text) in the colour of its level."""
        text, level = (status, "info") if isinstance(status, str) else (status.text, status.level)
        colour = _COLOURS.get(level)
        self.setStyleSheet(f"color: {colour}" if colour else "")
        self.setText(text.replace("/", "/\u200b"))  # a zero-width space: a place to wrap long paths
        self.setToolTip(text)


class HelpText(QLabel):
    """Small word-wrapped help that takes the dock's width instead of widening the dock to its longest line."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.setWordWrap(True)
        self.setStyleSheet("font-size: small")
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        self.setMinimumWidth(10)


def scrolling_body(dock: QWidget) -> QVBoxLayout:
    """Give ``dock`` a scrollable body and return its layout, so a narrow or short dock crushes nothing."""
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    body = QWidget()
    area.setWidget(body)
    outer.addWidget(area)
    return QVBoxLayout(body)
