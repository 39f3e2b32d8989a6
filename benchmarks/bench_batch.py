"""The segment command on a folder: files per minute with the plain loop, and on a dask LocalCluster of 1 and 2 workers.

Generated nuclei images (TIFF), the demo model at its recommended settings,
fp32, no embedding cache (every file is encoded). Each mode runs the whole
command (`main(["segment", ...])`) into a fresh results folder, and its time
counts everything a user waits for: starting the cluster, each worker
loading the model, the files. The plain loop runs first and last: its two
times show how much the shared machine drifted during the run.

Printed per mode: seconds, files per minute, and the ratio to the first
plain run; "overhead of the distributed path" is 1 worker against the plain
loop (same cores, the same work: what dask's start, model loading in a
worker process and moving results costs).

    python benchmarks/bench_batch.py --files 12 --size 128 [--out /work/notes/bench_batch.txt]
"""

import argparse
import io
import sys
import tempfile
import time
from contextlib import redirect_stderr
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]
from _machine import cpu_summary, load_average  # noqa: E402

import napari_sam.batch.job as job_module  # noqa: E402
from napari_sam.cli import main  # noqa: E402


def make_folder(folder: Path, n: int, size: int) -> None:
    import tifffile

    from napari_sam.synthetic import make_nuclei_2d

    folder.mkdir(parents=True)
    for i in range(n):
        image, _ = make_nuclei_2d((size, size), n_objects=(8, 14), seed=1000 + i)
        tifffile.imwrite(folder / f"nuclei_{i:03d}.tif", image)


def run(mode: str, data: Path, out: Path, points: int) -> tuple[float, str]:
    job_module._GENERATORS.clear()  # the plain loop loads its model inside the timed run, as the workers do
    args = ["segment", str(data), "--out", str(out), "--model", "demo", "--no-cache", "--precision", "fp32",
            "--points-per-side", str(points), "--quiet"]
    if mode != "plain":
        args += ["--workers", mode]
    log = io.StringIO()
    start = time.perf_counter()
    with redirect_stderr(log):
        status = main(args)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{mode}: exit status {status}\n{log.getvalue()}")
    return seconds, log.getvalue().strip().splitlines()[-1]


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--points-per-side", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(2)

    lines = [cpu_summary(), f"load average at start: {load_average()}",
             f"{args.files} generated {args.size}x{args.size} nuclei TIFFs, demo model fp32, "
             f"{args.points_per_side}x{args.points_per_side} points, no embedding cache; torch threads: plain 2, "
             "LocalCluster workers cores // workers each"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_folder(data, args.files, args.size)
        times = {}
        for i, mode in enumerate(["plain", "1", "2", "plain"]):
            name = "plain loop" if mode == "plain" else f"{mode} worker{'s' * (mode != '1')}"
            name += " (again)" if i == 3 else ""
            seconds, summary = run(mode, data, Path(tmp) / f"out{i}", args.points_per_side)
            times[name] = seconds
            ratio = seconds / times["plain loop"]
            line = (f"{name:<20} {seconds:7.1f} s  {60 * args.files / seconds:6.1f} files/min  "
                    f"x{ratio:.2f} of the plain loop's time   [{summary}]")
            lines.append(line)
            print(line, flush=True)
    plain = (times["plain loop"] + times["plain loop (again)"]) / 2
    tail = [f"overhead of the distributed path (1 worker / mean plain loop): x{times['1 worker'] / plain:.2f}",
            f"speed-up of 2 workers over 1 worker: x{times['1 worker'] / times['2 workers']:.2f}; over the plain loop: "
            f"x{plain / times['2 workers']:.2f}",
            f"load average at end: {load_average()}"]
    print("\n".join(tail))
    if args.out is not None:
        args.out.write_text("\n".join(lines + tail) + "\n")


if __name__ == "__main__":
    main_bench()
