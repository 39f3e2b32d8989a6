"""Following one object from slice to slice through a stack: the names of :mod:`.propagation`.

The code lives in the :mod:`napari_sam.volume.propagation` package (one
module per job); this module keeps the names the Volume dock, the tests and
the benchmarks import from ``napari_sam.volume.propagate``.
"""

from ..progress import CancelCheck, ProgressCallback  # noqa: F401  (named here before the split)
from .propagation import (  # noqa: F401
    DEFAULT_IOU_THRESHOLD,
    PRESETS,
    Correction,
    ObjectsResult,
    correct,
    plan_objects_change,
    propagate_all,
    propagate_objects,
    DEFAULT_PROMPT,
    PROMPT_PARTS,
    PropagationResult,
    SamSliceSegmenter,
    SliceOutcome,
    SlicePrompt,
    SliceSegmentation,
    SliceSegmenter,
    Stop,
    annotations_from_labels,
    prompt_from_mask,
    propagate,
    propagate_with_sam,
)
