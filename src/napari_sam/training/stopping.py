"""Stopping a training run without losing it: Ctrl-C and SIGTERM end it the same way.

A cluster's job scheduler (or ``kill``) stops a program with SIGTERM, not
Ctrl-C; by default that ends Python at once and the steps since the last
resumable checkpoint are lost. Inside :func:`stop_requests_interrupt`,
SIGTERM raises :class:`Terminated`, a KeyboardInterrupt, so the loop saves its
state exactly as for Ctrl-C. :func:`stop_requests_held` keeps a second signal
from cutting that save short.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM)."""

    def __init__(self, signal_number: int):
        super().__init__(f"signal {signal_number}")
        self.signal_number = signal_number


def _can_handle_signals() -> bool:
    # Python only lets the main thread install signal handlers.
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGTERM")


@contextlib.contextmanager
def stop_requests_interrupt():
    """Within this block SIGTERM raises :class:`Terminated` (Ctrl-C raises KeyboardInterrupt as always)."""
    if not _can_handle_signals():
        yield
        return

    def on_sigterm(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def stop_requests_held():
    """Within this block Ctrl-C and SIGTERM are ignored (while the state to resume from is written)."""
    if not _can_handle_signals():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_status(err: BaseException) -> int:
    """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + int(getattr(err, "signal_number", signal.SIGINT))
