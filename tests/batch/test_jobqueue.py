"""The SLURM path as far as it runs without SLURM: dask-jobqueue's scheduler, and workers started from its job script.

Skipped where dask-jobqueue is not installed (it is not a dependency: only cluster users need it).
"""

import shlex
import subprocess
import time

import pytest
import tifffile
from batch_helpers import FAST, nuclei

from napari_sam.cli import main

jobqueue = pytest.importorskip("dask_jobqueue")


def test_segment_runs_on_workers_started_by_a_slurm_job_script(tmp_path, capsys):
    for i in range(2):
        tifffile.imwrite(tmp_path / f"n{i}.tif", nuclei(seed=i))
    cluster = jobqueue.SLURMCluster(cores=1, processes=1, memory="4GB", walltime="00:30:00",
                                    scheduler_options={"dashboard_address": None})
    line = next(row for row in cluster.job_script().splitlines() if "dask_worker" in row)
    worker = subprocess.Popen(shlex.split(line), stderr=subprocess.DEVNULL)  # what sbatch would run on a node
    try:
        time.sleep(5)
        assert main(["segment", str(tmp_path / "n*.tif"), "--out", str(tmp_path / "out"),
                     "--scheduler", cluster.scheduler_address, *FAST]) == 0
    finally:
        worker.terminate()
        cluster.close()
    assert "2 segmented" in capsys.readouterr().err and (tmp_path / "out" / "n1.labels.tif").exists()
