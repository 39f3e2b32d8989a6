"""The annotation session and what it stands on; plain Python, no Qt, no napari.

Where a plane becomes an embedding (memory -> disk -> encoder) is :mod:`napari_sam.embeddings`.

* :mod:`.planes` - the image as planes, and its intensity rule;
* :mod:`.engine` - what a model offers (:class:`Engine`) and our SAM behind it;
* :mod:`.registry` - each model loaded once per process;
* :mod:`.workspace` - what every dock shares (models, embeddings);
* :mod:`.session` - one image being annotated: slice shown, prompts, candidates, commits
  (its steps in :mod:`.prompting`, :mod:`.labelling`, :mod:`.prefetching`; :mod:`.status`);
* :mod:`.tiled` - planes too large for one embedding: clicks on the tiles they need
  (:mod:`.cropped_commit` writes a candidate's box);
* :mod:`.work` - background lanes whose results come home through ``post``;
* :mod:`.proposals` - segment everything's proposals until accepted, split by
  :mod:`.confidence` into confident and unsure;
* :mod:`.gaps` - where signal is left uncovered; :mod:`.tally` - the semi-automatic counter.
"""

from ..embeddings import COMPUTED, FROM_DISK, FROM_MEMORY, EmbeddingSource, Found, plane_and_key, slice_key
from .engine import Engine, SamEngine
from .planes import ImagePlanes
from .registry import EngineRegistry, EngineSpec
from .session import AnnotationSession, Status
from .work import Job, Lane, post_directly
from .workspace import Workspace, shared_workspace

__all__ = [
    "COMPUTED",
    "FROM_DISK",
    "FROM_MEMORY",
    "AnnotationSession",
    "EmbeddingSource",
    "Engine",
    "EngineRegistry",
    "EngineSpec",
    "Found",
    "ImagePlanes",
    "Job",
    "Lane",
    "SamEngine",
    "Status",
    "Workspace",
    "plane_and_key",
    "post_directly",
    "shared_workspace",
    "slice_key",
]
