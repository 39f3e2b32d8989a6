"""What a session tells the user: its one-line state, and errors made into one line."""

from __future__ import annotations

import traceback
from dataclasses import dataclass


@dataclass(frozen=True)
class Status:
    """The session's state in one sentence; ``level`` is "info", "busy", "warning" or "error"."""

    text: str
    level: str = "info"


def one_line(err: BaseException) -> str:
    """An exception as one line of the status bar (a multi-line message would hide the rest of the dock)."""
    text = "".join(traceback.format_exception_only(type(err), err)).strip()
    return " ".join(text.split())
