"""Segment everything: prompt SAM with a grid of points, keep the confident and stable masks.

Torch + numpy + scipy, no napari or Qt (the "SAM Everything" dock is built on it).

* :mod:`.generator` — :class:`AutomaticMaskGenerator`: ``generate``, or ``decode_grid`` once then ``filter``.
* :mod:`.settings` — Segment Anything's settings, names and defaults, checked.
* :mod:`.grid`, :mod:`.decode`, :mod:`.nms`, :mod:`.postprocess`, :mod:`.rle` — its steps.
* :mod:`.labels` — masks to one label image and an object table.
* :mod:`.stack` — slice by slice through a stack, objects linked through z.
* :mod:`.metrics` — mean segmentation accuracy, for benchmarks.
"""

from .decode import SegmentationCancelled
from .generator import AutomaticMaskGenerator, DecodedGrid
from .settings import AutoSettings, make_settings

__all__ = ["AutoSettings", "AutomaticMaskGenerator", "DecodedGrid", "SegmentationCancelled", "make_settings"]
