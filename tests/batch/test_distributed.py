"""The segment command on a dask LocalCluster of 2 worker processes: a killed worker, a worker out of memory."""

import functools
import socket

import cloudpickle
import tifffile
from batch_helpers import FAST, nuclei

import cluster_jobs
from napari_sam.batch import command
from napari_sam.cli import build_parser, main

cloudpickle.register_pickle_by_value(cluster_jobs)


def test_a_killed_worker_loses_only_its_task_which_is_retried_and_the_run_completes(tmp_path, capsys):
    data, out, markers = tmp_path / "data", tmp_path / "out", tmp_path / "markers"
    data.mkdir(), markers.mkdir()
    for i in range(4):
        tifffile.imwrite(data / f"n{i}.tif", nuclei(seed=i))
    args = build_parser().parse_args(["segment", str(data), "--out", str(out), "--workers", "2", *FAST])
    seen = []
    real_report = command._report

    def report(result, args, say):
        seen.append(result)
        real_report(result, args, say)

    command._report, job = report, functools.partial(cluster_jobs.troubled_job, str(markers))
    try:
        assert command.run_segment(args, job=job) == 1
    finally:
        command._report = real_report
    err = capsys.readouterr().err
    killed_pid = int((markers / "killed").read_text())
    by_name = {r.name: r for r in seen}
    assert sorted(by_name) == ["n0", "n1", "n2", "n3"]
    # n1's worker died; the task ran again elsewhere (a fresh process) and finished.
    assert by_name["n1"].status == "done" and by_name["n1"].worker != f"pid {killed_pid}"
    assert all((out / f"n{i}.labels.tif").exists() for i in (0, 1, 3))
    # n2 ran out of memory on its worker: failed, with that reason in the summary; the others went on.
    assert by_name["n2"].status == "failed" and not (out / "n2.labels.tif").exists()
    summary = err[err.index("done:"):]
    assert "3 segmented, 0 skipped, 1 failed" in summary
    assert "n2.tif: out of memory (Unable to allocate 3.1 GiB for an array)" in summary
    # Each worker process loaded the model once, however many inputs it segmented.
    assert {r.reason for r in seen if r.status == "done"} == {"loads=1"}
    assert len({r.worker for r in seen}) >= 2


def test_a_scheduler_that_does_not_answer_ends_the_run_with_a_message(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "a.tif", nuclei())
    with socket.socket() as s:  # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    assert main(["segment", str(tmp_path / "a.tif"), "--out", str(tmp_path / "out"), "--scheduler", address,
                 "--connect-timeout", "1", *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert f"no dask scheduler answers at {address} within 1 s" in err and "nothing was segmented" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out" / "a.labels.tif").exists()


def test_a_task_whose_workers_keep_dying_is_reported_with_that_reason():
    from dask.distributed import KilledWorker

    from napari_sam.batch.inputs import Input
    from napari_sam.batch.runners import _result_of

    class Gone:
        status = "error"

        def exception(self):
            return KilledWorker("segment-n3-1234", "tcp://127.0.0.1:40000", allowed_failures=3)

    result = _result_of(Gone(), Input("n3.tif", "n3", "tiff"))
    assert result.status == "failed" and "workers running it died each time it was tried" in result.reason
    assert "more memory" in result.reason
