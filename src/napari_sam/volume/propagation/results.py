"""What a propagation found: the object in 3D, each slice's outcome and why each walk ended."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SliceOutcome:
    index: int
    status: str  # "annotated" or "propagated"
    area: int  # pixels in the mask
    annotation: int  # the annotated slice this walk started from
    prompted_from: int | None = None  # the slice whose mask gave the prompt
    score: float = float("nan")
    iou_with_previous: float = float("nan")


@dataclass(frozen=True)
class Stop:
    """Where and why one walk ended."""

    annotation: int  # the annotated slice the walk started from
    direction: int  # +1 towards higher slice indices, -1 towards lower ones
    last_slice: int  # the last slice the walk accepted (or the annotation)
    reason: str  # "vanished", "iou_below_threshold", "regrowth", "stack_end", "max_distance", "met_other_walk", "cancelled"
    rejected_slice: int | None = None  # the slice whose mask was refused, if any
    area: int | None = None  # of the refused mask
    iou: float | None = None  # of the refused mask with the previous one

    def describe(self) -> str:
        towards = "up" if self.direction > 0 else "down"
        text = f"walk from slice {self.annotation} {towards} ended after slice {self.last_slice}: "
        if self.reason == "vanished":
            return text + f"the mask vanished on slice {self.rejected_slice} ({self.area} pixels)"
        if self.reason == "iou_below_threshold":
            return text + f"slice {self.rejected_slice} overlaps the previous one too little (IoU {self.iou:.2f})"
        if self.reason == "signal_rose_again":
            return text + f"the signal grew again on slice {self.rejected_slice}: the next object along z?"
        if self.reason == "regrowth":
            return text + f"the mask grew again on slice {self.rejected_slice} ({self.area} pixels): another object?"
        return text + self.reason.replace("_", " ")


@dataclass
class PropagationResult:
    mask: np.ndarray  # (Z, H, W) bool: the object in 3D
    slices: dict[int, SliceOutcome] = field(default_factory=dict)  # every slice in the object
    stops: list[Stop] = field(default_factory=list)
    cancelled: bool = False

    @property
    def z_extent(self) -> tuple[int, int] | None:
        """First and last slice holding the object."""
        if not self.slices:
            return None
        return min(self.slices), max(self.slices)

    @property
    def propagated_slices(self) -> list[int]:
        return sorted(i for i, s in self.slices.items() if s.status == "propagated")

    def summary(self) -> str:
        lines = [f"object on {len(self.slices)} slices ({len(self.propagated_slices)} propagated)"]
        lines += [stop.describe() for stop in self.stops]
        if self.cancelled:
            lines.append("cancelled")
        return "\n".join(lines)
