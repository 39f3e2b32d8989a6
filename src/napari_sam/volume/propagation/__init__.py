"""Following one object from slice to slice through a stack.

The user segments an object on one or more slices (the *annotated* slices).
From each annotated slice we walk to the neighbouring slices, one at a
time: the next slice is prompted with what we know from the slice before.

* :mod:`.slices` — the protocol between the walk and the model (prompt in, mask out).
* :mod:`.prompting` — the prompt for the next slice from the previous slice's mask.
* :mod:`.stopping` — when a walk ends, and the checked settings deciding it.
* :mod:`.annotations` — the slices the user segmented, checked or read from labels.
* :mod:`.walk` — the walks from each annotation, meeting between annotations.
* :mod:`.results` — the object in 3D, each slice's outcome, each walk's end.
* :mod:`.signal` — fitting masks to the object's own signal (the blurred ghost beyond its ends).
* :mod:`.shaping` — what the object may own on a slice: its signal, its shrinking outline, no other object.
* :mod:`.anisotropy` — the distance between slices (from the image's scale), which the per-slice limits follow.
* :mod:`.objects` — several objects at once ("Propagate all"), one-to-one in each slice.
* :mod:`.contested` — splitting pixels two objects took along the signal's valley between them (measured, off).
* :mod:`.correction` — fixing one slice with a click and re-propagating from it.
* :mod:`.sam_slices` — the protocol answered by SAM on a stack's embeddings.
"""

from .annotations import annotations_from_labels, check_annotations
from .correction import Correction, correct
from .objects import ObjectsResult, plan_objects_change, propagate_all, propagate_objects
from .prompting import DEFAULT_PROMPT, PROMPT_PARTS, prompt_from_mask
from .results import PropagationResult, SliceOutcome, Stop
from .sam_slices import SamSliceSegmenter, propagate_with_sam
from .slices import SlicePrompt, SliceSegmentation, SliceSegmenter, check_answer
from .stopping import DEFAULT_IOU_THRESHOLD, check_settings, refusal
from .walk import PRESETS, propagate

__all__ = [
    "Correction",
    "ObjectsResult",
    "PRESETS",
    "correct",
    "plan_objects_change",
    "propagate_all",
    "propagate_objects",
    "DEFAULT_IOU_THRESHOLD",
    "DEFAULT_PROMPT",
    "PROMPT_PARTS",
    "PropagationResult",
    "SamSliceSegmenter",
    "SliceOutcome",
    "SlicePrompt",
    "SliceSegmentation",
    "SliceSegmenter",
    "Stop",
    "annotations_from_labels",
    "check_annotations",
    "check_answer",
    "check_settings",
    "prompt_from_mask",
    "propagate",
    "propagate_with_sam",
    "refusal",
]
