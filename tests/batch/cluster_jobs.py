"""Jobs that misbehave on a dask worker, sent by value (the workers cannot import the tests)."""

import os
import signal
from pathlib import Path

import napari_sam.batch.job as job_module


def troubled_job(marker_folder, item, spec, out, say=None):
    """n1 kills its own worker the first time it is tried; n2 runs out of memory while being segmented."""
    if item.name == "n1":
        marker = Path(marker_folder) / "killed"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-run, its task half done
    if item.name == "n2":
        real = job_module.segment_plane

        def out_of_memory(*args, **kwargs):
            raise MemoryError("Unable to allocate 3.1 GiB for an array")

        job_module.segment_plane = out_of_memory
        try:
            return job_module.segment_input(item, spec, out, say)
        finally:
            job_module.segment_plane = real
    result = job_module.segment_input(item, spec, out, say)
    result.reason = f"loads={job_module.MODEL_LOADS['count']}"  # each worker process loads the model once
    return result
