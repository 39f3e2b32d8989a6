"""A stack of the session's image, for the work that walks through slices: "Embed stack", propagation.

A :class:`SessionStack` is the slices of the image along one axis (z of a
(t, z, y, x) image at the t shown). Its embeddings come from the workspace's
one lookup chain (:class:`~.embeddings.EmbeddingSource`), so what "Embed
stack" computes is what the annotator and propagation read, and the other way
round. It offers what :mod:`napari_sam.volume.propagate` asks of a stack's
embeddings (``len``, ``get(i)``, ``predictor``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..progress import CancelCheck, ProgressCallback
from .embeddings import COMPUTED, plane_and_key


@dataclass
class StackReport:
    """What :meth:`SessionStack.embed_all` did."""

    total: int
    computed: list[int] = field(default_factory=list)
    loaded: list[int] = field(default_factory=list)
    cancelled: bool = False

    def summary(self) -> str:
        done = len(self.computed) + len(self.loaded)
        text = f"{done} of {self.total} slices embedded ({len(self.computed)} computed, {len(self.loaded)} from the cache)"
        return text + ("; cancelled: press Embed stack again to go on" if self.cancelled else "")


class SessionStack:
    """Slices ``slices`` (full slice indices of the image, in stack order) with one engine."""

    def __init__(self, planes, slices, engine, source, use_store: bool = True) -> None:
        self.planes, self.slices, self.engine, self.source = planes, list(slices), engine, source
        self.use_store = use_store
        self._predictor = None

    def __len__(self) -> int:
        return len(self.slices)

    @property
    def predictor(self):
        """A predictor of this stack's own (decoding here never disturbs the annotator's clicks)."""
        if self._predictor is None:
            self._predictor = self.engine.new_predictor()
        return self._predictor

    def fetch(self, i: int):
        plane, key = plane_and_key(self.planes, self.slices[i], self.engine)
        return self.source.get(key, plane, self.engine, self.planes.intensity_range(), use_store=self.use_store)

    def get(self, i: int):
        return self.fetch(i).embedding

    def embed_all(self, progress: ProgressCallback | None = None, should_cancel: CancelCheck | None = None) -> StackReport:
        """Every slice's embedding into memory and the store; slices already there are only read."""
        report = StackReport(total=len(self))
        if progress is not None:
            progress(0, len(self))
        for i in range(len(self)):
            if should_cancel is not None and should_cancel():
                report.cancelled = True
                break
            found = self.fetch(i)
            (report.computed if found.origin == COMPUTED else report.loaded).append(i)
            if progress is not None:
                progress(i + 1, len(self))
        return report
