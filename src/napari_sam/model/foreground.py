"""Clicks first: a long image-encoder pass pauses while the user's prompt is decoded.

An embedding keeps both cores of a laptop busy for seconds (vit_b on an
AVX2 CPU: about 13 s). A click decoded beside it shares the cores, the
caches and the memory bus with it, and took twice as long as on an idle
machine, even with the embedding at a lower CPU priority. So the encoder
gets places to pause: before each of its layers it asks the gate whether
foreground work (a click, a box) is running, and if so waits until that is
done. A click then finds the CPU free after at most one layer (tens of ms),
and the embedding resumes where it stopped, with the same numbers.

The gate lives on the encoder module itself, so every predictor running that
module (twins, "Embed stack", automatic segmentation in the same process)
pauses for the user's clicks. A thread holding the gate never waits for
itself: a click that needs an embedding (a tile of a large plane) computes it.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager

import torch

# The gate of each encoder module. Not an attribute of the module: a deep copy of it (a bf16 or int8
# copy, a copy for training) would try to copy the gate's lock. A copy keeps the original's pause points.
_GATES: "weakref.WeakKeyDictionary[torch.nn.Module, ForegroundGate]" = weakref.WeakKeyDictionary()

#: Longest one pause lasts; then the encoder goes on (a stuck holder must not stop embeddings for good).
MAX_PAUSE_S = 2.0


class ForegroundGate:
    """Who is doing foreground work now, and a wait for background work until nobody is."""

    def __init__(self) -> None:
        self._holders: dict[int, int] = {}  # thread id -> how many times it holds the gate
        self._free = threading.Condition()

    @property
    def busy(self) -> bool:
        return bool(self._holders)

    @contextmanager
    def hold(self):
        """Foreground work: background passes pause at their next layer until this ends."""
        me = threading.get_ident()
        with self._free:
            self._holders[me] = self._holders.get(me, 0) + 1
        try:
            yield
        finally:
            with self._free:
                left = self._holders[me] - 1
                if left:
                    self._holders[me] = left
                else:
                    del self._holders[me]
                if not self._holders:
                    self._free.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Return when no other thread does foreground work, or after ``timeout`` (:data:`MAX_PAUSE_S`).

        True when it returns because the gate is free (at once, the common case).
        """
        if not self._holders:  # the common case, without taking the lock
            return True
        me = threading.get_ident()
        with self._free:
            return self._free.wait_for(lambda: not self._holders or me in self._holders,
                                       MAX_PAUSE_S if timeout is None else timeout)


def _pause(gate: ForegroundGate) -> None:
    gate.wait()  # a forward pre-hook must return None: anything else would replace the layer's input


def gate_of(encoder: torch.nn.Module) -> ForegroundGate:
    """The encoder's gate; the first call puts a pause point before each of its layers.

    Called when a predictor is made, before any thread runs the encoder, so
    the hooks are never added while another thread iterates over them.
    """
    gate = _GATES.get(encoder)
    if gate is None:
        gate = _GATES[encoder] = ForegroundGate()
        for module in encoder.modules():
            if not any(True for _ in module.children()):  # a layer, not a container
                module.register_forward_pre_hook(lambda *_: _pause(gate))
    return gate
