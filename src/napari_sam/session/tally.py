"""The counter of semi-automatic annotation: objects done on this image, images done in the series.

Objects are the ids in the user's labels on the slice or stack being
annotated; those that came in by accepting a proposal are counted apart
(the dock remembers the ids it wrote), so the user sees how much the model
did. A series dock tells the images done through the image layer's metadata
(:data:`SERIES_KEY`), so the two docks need not know each other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ``layer.metadata[SERIES_KEY] = {"done": a, "total": b}``: set by a series dock on the image it opened.
SERIES_KEY = "napari_sam_series"


@dataclass(frozen=True)
class Tally:
    objects: int
    from_proposals: int
    series_done: int | None = None
    series_total: int | None = None

    def describe(self) -> str:
        text = f"{self.objects} object{'s' if self.objects != 1 else ''} on this image"
        if self.objects:
            text += f" ({self.from_proposals} from proposals)"
        if self.series_total is not None:
            text += f"; {self.series_done} of {self.series_total} images done in the series"
        return text


def series_progress(metadata) -> tuple[int, int] | None:
    """``(done, total)`` from an image layer's metadata, or None when no series dock set it (or it is unusable)."""
    entry = (metadata or {}).get(SERIES_KEY) if isinstance(metadata, dict) else None
    if not isinstance(entry, dict):
        return None
    done, total = entry.get("done"), entry.get("total")
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (done, total)):
        return None
    if not 0 <= done <= total:
        return None
    return int(done), int(total)


def count(labels, accepted_ids=(), metadata=None) -> Tally:
    """The objects in ``labels`` (the slice or stack annotated), how many of them are ``accepted_ids``."""
    present = np.unique(np.asarray(labels))
    present = present[present != 0]
    from_proposals = int(np.isin(present, np.asarray(sorted(accepted_ids), dtype=np.int64)).sum())
    series = series_progress(metadata)
    return Tally(int(present.size), from_proposals, *(series or (None, None)))
