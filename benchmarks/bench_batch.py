"""The segment command on a folder: files per minute with the plain loop, and on a dask LocalCluster of 1 and 2 workers.

With ``--stacks K``: K generated 3D stacks instead, slices per minute with the
plain loop and with 2 workers, one task per file (``--split files``) and one
task per slice (``--split slices``, the default on a cluster): the per-slice
path lets both workers share one stack.

Generated nuclei images (TIFF), the demo model at its recommended settings,
fp32, no embedding cache (every file is encoded). Each mode runs the whole
command (`main(["segment", ...])`) into a fresh results folder, and its time
counts everything a user waits for: starting the cluster, each worker
loading the model, the files. The modes take turns, --rounds times
(plain, 1, 2, plain, 1, 2 ...), and each is reported by its fastest round:
on a shared machine the others' load only ever adds time.

Printed per mode: seconds, files per minute, and the ratio to the plain
loop's, then the same split in two: the start (cluster up, for the plain
loop the model load) and the files themselves (from the first task to the
summary: for workers this includes each worker loading the model once).
"Overhead of the distributed path" is 1 worker against the plain loop (same
cores, the same work). A short plain run first warms up torch and the disk
cache, so that the first timed run is not the cold one.

    python benchmarks/bench_batch.py --files 12 --size 128 [--out /work/notes/bench_batch.txt]
    python benchmarks/bench_batch.py --stacks 1 --slices 12 --size 128
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


def make_folder(folder: Path, n: int, size: int, slices: int = 0) -> None:
    """``n`` generated nuclei TIFFs: planes, or stacks of ``slices`` slices."""
    import tifffile

    from napari_sam.synthetic import make_nuclei_2d, make_nuclei_3d

    folder.mkdir(parents=True)
    for i in range(n):
        if slices:
            image, _ = make_nuclei_3d((slices, size, size), n_objects=(8, 14), seed=1000 + i)
        else:
            image, _ = make_nuclei_2d((size, size), n_objects=(8, 14), seed=1000 + i)
        tifffile.imwrite(folder / f"nuclei_{i:03d}.tif", image)


def run(mode: str, data: Path, out: Path, points: int) -> tuple[float, str]:
    """One whole command; ``mode``: "plain", a number of workers, or "2 files" / "2 slices" (workers, split)."""
    job_module._GENERATORS.clear()  # the plain loop loads its model inside the timed run, as the workers do
    args = ["segment", str(data), "--out", str(out), "--model", "demo", "--no-cache", "--precision", "fp32",
            "--points-per-side", str(points), "--quiet"]
    if mode != "plain":
        workers, *split = mode.split()
        args += ["--workers", workers] + (["--split", split[0]] if split else [])
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
    parser.add_argument("--rounds", type=int, default=2, help="turns of the three modes; the fastest counts")
    parser.add_argument("--stacks", type=int, default=0, help="stacks instead of planes: how many (0: planes)")
    parser.add_argument("--slices", type=int, default=12, help="--stacks: slices per stack")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    torch.set_num_threads(2)

    stacks = args.stacks > 0
    n_files = args.stacks if stacks else args.files
    what = f"{args.stacks} generated {args.slices}x{args.size}x{args.size} nuclei stacks" if stacks else \
        f"{args.files} generated {args.size}x{args.size} nuclei TIFFs"
    lines = [cpu_summary(), f"load average at start: {load_average()}",
             f"{what}, demo model fp32, {args.points_per_side}x{args.points_per_side} points, no embedding cache; "
             "torch threads: plain 2, LocalCluster workers cores // workers each"]
    print("\n".join(lines), flush=True)
    modes = ["plain", "2 files", "2 slices"] if stacks else ["plain", "1", "2"]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        make_folder(data, n_files, args.size, args.slices if stacks else 0)
        warm = Path(tmp) / "warm"
        make_folder(warm, 2, args.size)
        run("plain", warm, Path(tmp) / "out_warm", args.points_per_side)
        best: dict[str, tuple[float, float]] = {}
        for r in range(args.rounds):
            for mode in modes:
                seconds, summary = run(mode, data, Path(tmp) / f"out{r}-{mode.replace(' ', '-')}", args.points_per_side)
                files_s = float(summary.split(" in ")[-1].split()[0])
                print(f"  round {r + 1}, {mode}: {seconds:.1f} s (files {files_s:.1f} s)", flush=True)
                if mode not in best or seconds < best[mode][0]:
                    best[mode] = (seconds, files_s)
    names = {"plain": "plain loop", "1": "1 worker", "2": "2 workers", "2 files": "2 workers, a task per file",
             "2 slices": "2 workers, a task per slice"}
    units, count = ("slices", n_files * args.slices) if stacks else ("files", args.files)
    for mode, (seconds, files_s) in best.items():
        line = (f"{names[mode]:<27} {seconds:6.1f} s  {60 * count / seconds:6.1f} {units}/min  "
                f"x{seconds / best['plain'][0]:.2f} of the plain loop's time;  start {seconds - files_s:4.1f} s, "
                f"{units} {files_s:5.1f} s ({60 * count / files_s:6.1f} {units}/min)")
        lines.append(line)
        print(line, flush=True)
    if stacks:
        per_file, per_slice = best["2 files"][0], best["2 slices"][0]
        tail = [f"a task per slice against a task per file (2 workers): x{per_file / per_slice:.2f} faster; "
                f"against the plain loop: x{best['plain'][0] / per_slice:.2f}"]
    else:
        tail = [f"overhead of the distributed path (1 worker / plain loop): x{best['1'][0] / best['plain'][0]:.2f} "
                f"(+{best['1'][0] - best['plain'][0]:.1f} s)",
                f"speed-up of 2 workers over 1 worker: x{best['1'][0] / best['2'][0]:.2f}; over the plain loop: "
                f"x{best['plain'][0] / best['2'][0]:.2f}"]
    tail.append(f"load average at end: {load_average()}")
    print("\n".join(tail))
    if args.out is not None:
        args.out.write_text("\n".join(lines + tail) + "\n")


if __name__ == "__main__":
    main_bench()
