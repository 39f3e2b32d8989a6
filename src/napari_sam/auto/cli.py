"""The ``segment`` command moved to :mod:`napari_sam.batch.command` (folders, OME-Zarr, resume, dask).

Kept so that ``from napari_sam.auto.cli import add_segment_command, run_segment`` goes on working.
"""

from ..batch.command import SETTINGS as _SETTINGS  # noqa: F401
from ..batch.command import add_segment_command, run_segment

__all__ = ["add_segment_command", "run_segment"]
