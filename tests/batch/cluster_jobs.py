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


def dying_slice(marker_folder, plan, z, spec):
    """Slice 2 of stack "a" kills its own worker the first time it is tried; each run of a slice notes who ran it
    and whether it segmented the slice or found it saved (a result lost with a dead worker's memory is asked again)."""
    import napari_sam.batch.slices as slices

    folder = Path(marker_folder)
    if plan.item.name == "a" and z == 2 and not (folder / "killed").exists():
        (folder / "killed").write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    done = slices.segment_slice(plan, z, spec)
    how = "saved" if done.seconds == 0.0 else "segmented"
    (folder / f"{plan.item.name}-z{z}-{how}-pid{os.getpid()}-{os.urandom(2).hex()}").write_text("")
    return done


def greedy_job(item, spec, out, say=None):
    """"big" allocates memory until its worker's nanny kills it; the others write small labels (no model)."""
    import time

    import numpy as np

    from napari_sam.auto.labels import object_table
    from napari_sam.batch.outputs import write_results

    if item.name == "big":
        held = []
        for _ in range(300):  # 20 MB a step, up to 6 GB: far past the test's limit
            held.append(np.ones(20 * 2**20, dtype=np.uint8))
            time.sleep(0.01)
        raise AssertionError("the nanny did not stop this worker")
    labels = np.zeros((16, 16), np.uint32)
    labels[4:8, 4:8] = 1
    write_results(Path(out), item.name, item.kind, labels, object_table(labels), None, None)
    return job_module.Result(str(item.path), item.name, "done", n_objects=1, worker=f"pid {os.getpid()}")


def dying_tile(marker_folder, plan, tile, plane_shape, halo, spec):
    """Tile (1, 1) kills its own worker the first time it is tried; each run notes which tile, who ran it, and
    whether its answer got back (its marker is written after the segmentation)."""
    import napari_sam.batch.plane_tiles as plane_tiles

    folder = Path(marker_folder)
    if tile.index == (1, 1) and not (folder / "killed").exists():
        (folder / "killed").write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    found = plane_tiles.segment_plane_tile(plan, tile, plane_shape, halo, spec)
    (folder / f"tile{tile.index[0]}.{tile.index[1]}-pid{os.getpid()}-{os.urandom(2).hex()}").write_text("")
    return found
