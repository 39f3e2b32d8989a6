"""Batch runs of ``segment``: many files, folders and OME-Zarr images, here or on a dask.distributed cluster.

Plain Python (no napari or Qt), one job per module:

* :mod:`.inputs` — files, folders (recursive) and glob patterns to a list of inputs with output names.
* :mod:`.readers` — each input opened lazily (TIFF/BigTIFF via tifffile's zarr view, .npy, OME-Zarr level 0),
  damaged ones refused with the reason.
* :mod:`.outputs` — labels (TIFF, or an OME-Zarr labels group with a pyramid) and the object table, whole
  or not at all.
* :mod:`.job` — one input from start to finish; a :class:`~.job.Result` instead of an exception.
* :mod:`.slices` — a stack on a cluster as one task per slice, linked through z when all are back.
* :mod:`.runners` — the plain loop, or dask tasks (per input, or per slice for stacks) with retries.
* :mod:`.command` — the ``segment`` command: checks, the run, the summary.
"""

from .inputs import Input, find_inputs
from .job import JobSpec, Result, segment_input

__all__ = ["Input", "JobSpec", "Result", "find_inputs", "segment_input"]
