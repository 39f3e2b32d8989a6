"""One engine per model, device and precision, shared by every dock of the process.

A vit_h engine holds 2.5 GB of weights (plus a bf16 copy): two docks that
loaded it each would hold it twice. Docks therefore ask the registry, which
loads a model once and hands the same engine to everyone who asks for the
same :class:`EngineSpec`. Loading takes seconds (and may download), so
:meth:`EngineRegistry.get` is called from a background lane; two callers
asking for the same spec at once wait for one load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..model.device import PRECISIONS
from .engine import Engine, SamEngine

EngineFactory = Callable[[str, str, str], Engine]  # (model, device, precision) -> engine


@dataclass(frozen=True)
class EngineSpec:
    """What the user chose: a zoo name or checkpoint path, a device and a precision."""

    model: str
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("choose a model: a zoo name (demo, vit_t, vit_b ...) or a checkpoint file")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"device must be a name such as 'auto', 'cpu' or 'cuda', got {self.device!r}")

    def describe(self) -> str:
        extra = [v for v in (self.device, self.precision) if v != "auto"]
        return self.model + (f" ({', '.join(extra)})" if extra else "")


def load_sam_engine(model: str, device: str, precision: str) -> Engine:
    return SamEngine.load(model, device=device, precision=precision)


class EngineRegistry:
    """Engines by spec, each loaded once; thread-safe."""

    def __init__(self, factory: EngineFactory = load_sam_engine) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._engines: dict[EngineSpec, Engine] = {}
        self._loading: dict[EngineSpec, threading.Lock] = {}

    def loaded(self, spec: EngineSpec) -> Engine | None:
        """The engine for ``spec`` if it is loaded already (never loads)."""
        with self._lock:
            return self._engines.get(spec)

    def get(self, spec: EngineSpec) -> Engine:
        """The engine for ``spec``, loading it the first time (slow: call it off the main thread)."""
        if not isinstance(spec, EngineSpec):
            raise TypeError(f"expected an EngineSpec, got {type(spec).__name__}")
        with self._lock:
            engine = self._engines.get(spec)
            if engine is not None:
                return engine
            gate = self._loading.setdefault(spec, threading.Lock())
        with gate:  # a second caller for the same spec waits here for the first one's load
            with self._lock:
                engine = self._engines.get(spec)
            if engine is None:
                engine = self._factory(spec.model, spec.device, spec.precision)
                with self._lock:
                    self._engines[spec] = engine
        with self._lock:
            self._loading.pop(spec, None)
        return engine

    def specs(self) -> list[EngineSpec]:
        with self._lock:
            return list(self._engines)

    def forget(self, spec: EngineSpec) -> None:
        """Drop the registry's reference (the engine is freed once no dock uses it)."""
        with self._lock:
            self._engines.pop(spec, None)
