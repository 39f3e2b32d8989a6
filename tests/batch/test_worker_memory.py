"""A dask worker that really runs out of memory: its nanny kills it, the run finishes the other files, and the
summary says why the file failed and what to do."""

import cloudpickle
import dask
import tifffile
from batch_helpers import FAST, nuclei

import cluster_jobs
from napari_sam.batch import command
from napari_sam.cli import build_parser

cloudpickle.register_pickle_by_value(cluster_jobs)


def test_a_worker_killed_for_memory_fails_only_its_file_with_the_reason(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    for name in ("a", "big", "c", "d"):
        tifffile.imwrite(data / f"{name}.tif", nuclei())
    args = build_parser().parse_args(["segment", str(data), "--out", str(out), "--workers", "2",
                                      "--memory-limit", "1GB", *FAST])
    # A task is given up after its second worker dies (dask's default: its fourth), to keep this test short.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        assert command.run_segment(args, job=cluster_jobs.greedy_job) == 1
    err = capsys.readouterr().err
    summary = err[err.index("done:"):]
    assert "3 segmented, 0 skipped, 1 failed" in summary
    line = next(row for row in summary.splitlines() if "big.tif" in row)
    assert "ran out of memory and was restarted by dask" in line and "GB of its 1 GB memory limit" in line
    assert "use fewer --workers" in line and "--tile" in line
    assert all((out / f"{n}.labels.tif").exists() for n in "acd") and not (out / "big.labels.tif").exists()
