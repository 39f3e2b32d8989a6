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


def test_a_memory_restart_reported_after_the_worker_died_is_still_named(monkeypatch):
    """The nanny's event can reach the scheduler after the news of the death (a busy machine): it is waited for."""
    from dask.distributed import KilledWorker

    from napari_sam.batch import runners
    from napari_sam.batch.inputs import Input

    class Gone:
        status = "error"

        def exception(self):
            return KilledWorker("big-1f2e3d4c", "tcp://127.0.0.1:40000", allowed_failures=1)

    class LateClient:
        calls = 0

        def get_events(self, topic):
            LateClient.calls += 1
            late = [(0.0, {"worker": "tcp://127.0.0.1:40000", "rss": 1_500_000_000})]
            return late if LateClient.calls >= 3 else []

    monkeypatch.setattr(runners, "MEMORY_EVENT_WAIT_S", 2.0)
    reason = runners._result_of(Gone(), Input("big.tif", "big", "tiff"), LateClient(), 1e9).reason
    assert "ran out of memory and was restarted by dask" in reason and LateClient.calls == 3
    assert "1.5 GB of its 1 GB memory limit" in reason
