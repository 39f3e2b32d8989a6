"""Large images by tiles with the demo model: peak memory on a 10,000 x 10,000 plane, and mSA tiled vs cut.

Two measurements:

``memory``: a uint16 mosaic of generated nuclei fields (``--size`` square,
written once to ``--workdir`` as a tiled TIFF and a zarr store, field by
field, never whole) is segmented automatically with
:func:`napari_sam.tiles.segment_tiled`, read lazily from the TIFF (tifffile
as zarr) or the zarr store, labels written into a zarr store on disk. It
runs in a fresh subprocess; the figure is the peak resident memory while
segmenting (a thread samples /proc every 10 ms; ``ru_maxrss`` agrees) minus
the resident memory just before, with the model loaded and warmed up on one
tile: memory *beyond the model*. Target: under 4 GB.

``quality``: one generated image (``--msa-size``, no seams) segmented
tiled (halo) against the same image cut into independent fields of the tile
size, each field segmented alone (objects on the cuts come out in pieces);
mSA (IoU 0.5..0.95) of each against the true labels.

    python benchmarks/bench_tiles.py memory --size 10000 --tile 1024 --halo 128 --source tiff
    python benchmarks/bench_tiles.py quality --msa-size 1536 --tile 256 --halo 64

The demo model's encoder takes 256 px; a 1024 px tile is resized to it
(SAM's rule), but its masks are decoded at 1024 px, so memory is that of a
vit_b-sized tile (the encoder aside).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _machine import cpu_summary, load_average  # noqa: E402

FIELD = 1000  # side of one generated field of the mosaic
DISTINCT_FIELDS = 6  # generated once each, then rotated and flipped over the mosaic


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler(threading.Thread):
    """The highest resident memory seen, sampled every ``interval`` seconds."""

    def __init__(self, interval=0.01):
        super().__init__(daemon=True)
        self.interval, self.peak, self._done = interval, _rss_bytes(), threading.Event()

    def run(self):
        while not self._done.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return max(self.peak, _rss_bytes())


# ---------------------------------------------------------------- the mosaic
def make_mosaic(workdir: Path, size: int) -> dict:
    """A ``size`` square mosaic of generated fields, as a tiled TIFF and a zarr store (image and true labels)."""
    import tifffile
    import zarr

    from napari_sam.synthetic import make_nuclei_2d

    workdir.mkdir(parents=True, exist_ok=True)
    tif, store, done = workdir / f"mosaic_{size}.tif", workdir / f"mosaic_{size}.zarr", workdir / f"mosaic_{size}.done"
    paths = {"tiff": str(tif), "zarr": str(store / "image"), "truth": str(store / "truth")}
    if done.exists():
        return paths
    root = zarr.open_group(str(store), mode="w")
    image = root.create_array("image", shape=(size, size), chunks=(FIELD, FIELD), dtype="uint16")
    truth = root.create_array("truth", shape=(size, size), chunks=(FIELD, FIELD), dtype="uint32")
    fields = [make_nuclei_2d((FIELD, FIELD), n_objects=(150, 250), seed=9000 + k, dtype=np.uint16)
              for k in range(DISTINCT_FIELDS)]
    offset = 0
    for i in range(0, size, FIELD):
        for j in range(0, size, FIELD):
            k = (i // FIELD * 7 + j // FIELD * 3) % DISTINCT_FIELDS
            turn = (i // FIELD + j // FIELD) % 4
            img, lab = (np.rot90(a, turn) for a in fields[k])
            h, w = min(FIELD, size - i), min(FIELD, size - j)
            image[i:i + h, j:j + w] = img[:h, :w]
            lab = lab[:h, :w].astype(np.uint32)
            truth[i:i + h, j:j + w] = np.where(lab > 0, lab + offset, 0)
            offset += int(lab.max())
    side = 512  # TIFF tiles, written one at a time from the zarr store

    def tiles():
        for y in range(0, size, side):
            for x in range(0, size, side):
                block = np.zeros((side, side), np.uint16)
                part = image[y:y + side, x:x + side]
                block[:part.shape[0], :part.shape[1]] = part
                yield block

    tifffile.imwrite(tif, tiles(), shape=(size, size), dtype=np.uint16, tile=(side, side), bigtiff=True)
    done.write_text("ok")
    return paths


def open_image(paths: dict, source: str):
    import tifffile
    import zarr

    if source == "tiff":
        return zarr.open(tifffile.imread(paths["tiff"], aszarr=True), mode="r")
    return zarr.open_array(paths["zarr"], mode="r")


# ---------------------------------------------------------------- memory (child process)
def _memory_child(args) -> dict:
    import torch
    import zarr

    from napari_sam.auto import AutomaticMaskGenerator
    from napari_sam.model import load_model
    from napari_sam.model.registry import DEMO_AUTO_SETTINGS
    from napari_sam.tiles import plane_intensity_range, segment_tiled

    torch.set_num_threads(args.threads)
    paths = json.loads(args.paths)
    image = open_image(paths, args.source)
    settings = {**DEMO_AUTO_SETTINGS, "points_per_side": args.points_per_side}
    generator = AutomaticMaskGenerator(load_model("demo"), **settings)
    # Warm up on one tile of the image: the model's own memory (weights, first-call buffers) is the baseline.
    first = np.asarray(image[:args.tile, :args.tile])
    generator.generate(first, intensity_range=(float(first.min()), float(first.max()) + 1))
    del first
    out = zarr.open_array(str(Path(args.workdir) / f"labels_{args.size}_{args.source}.zarr"), mode="w",
                          shape=image.shape, chunks=(1024, 1024), dtype="uint32")
    baseline, maxrss_before = _rss_bytes(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    sampler = PeakSampler()
    sampler.start()
    start = time.perf_counter()
    ir = plane_intensity_range(image)
    range_s = time.perf_counter() - start
    result = segment_tiled(image, generator, out, tile=args.tile, halo=args.halo, intensity_range=ir,
                           clear_out=False)
    seconds = time.perf_counter() - start
    peak = sampler.stop()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"baseline": baseline, "extra": peak - baseline, "maxrss_extra": maxrss - max(baseline, maxrss_before),
            "seconds": seconds, "range_s": range_s, "tiles": len(result.tiling), "summary": result.summary()}


def run_memory(args) -> None:
    paths = make_mosaic(Path(args.workdir), args.size)
    command = [sys.executable, __file__, "memory-child", "--paths", json.dumps(paths)] + [
        f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if k not in ("what", "paths", "halos")]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the measuring process failed:\n{done.stderr[-2000:]}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    mp = args.size * args.size / 1e6
    print(f"{args.size} x {args.size} uint16 ({mp:.0f} MP) from {args.source}, tile {args.tile} halo {args.halo}, "
          f"points_per_side {args.points_per_side}: {r['tiles']} tiles in {r['seconds']:.0f} s "
          f"({r['seconds'] / r['tiles']:.2f} s/tile; contrast pass {r['range_s']:.1f} s)")
    print(f"  peak memory beyond the model: {r['extra'] / 1e9:.2f} GB sampled, {r['maxrss_extra'] / 1e9:.2f} GB "
          f"ru_maxrss (model loaded and warmed: {r['baseline'] / 1e9:.2f} GB; the image would be "
          f"{args.size * args.size * 2 / 1e9:.2f} GB, its labels {args.size * args.size * 4 / 1e9:.2f} GB)")
    print(f"  {r['summary']}")


# ---------------------------------------------------------------- quality
def _independent_fields(image, generator, side, intensity_range):
    """The image cut into fields of ``side`` px without overlap, each segmented alone."""
    from napari_sam.auto.labels import masks_to_labels

    labels = np.zeros(image.shape, np.uint32)
    top = 0
    for y in range(0, image.shape[0], side):
        for x in range(0, image.shape[1], side):
            field = image[y:y + side, x:x + side]
            lab, _ = masks_to_labels(generator.generate(field, intensity_range=intensity_range), field.shape)
            labels[y:y + side, x:x + side] = np.where(lab > 0, lab + top, 0)
            top += int(lab.max())
    return labels


def run_quality(args) -> None:
    import torch

    from napari_sam.auto import AutomaticMaskGenerator
    from napari_sam.auto.metrics import found_fraction, mean_segmentation_accuracy
    from napari_sam.model import load_model
    from napari_sam.model.registry import DEMO_AUTO_SETTINGS
    from napari_sam.synthetic import make_nuclei_2d
    from napari_sam.tiles import plane_intensity_range, segment_tiled

    torch.set_num_threads(args.threads)
    n = args.msa_size
    scale = n * n / 256**2
    image, truth = make_nuclei_2d((n, n), n_objects=(int(5 * scale), int(25 * scale)), seed=5000, dtype=np.uint16)
    generator = AutomaticMaskGenerator(load_model("demo"), **{**DEMO_AUTO_SETTINGS,
                                                              "points_per_side": args.points_per_side})
    ir = plane_intensity_range(image)
    print(f"{n} x {n} generated nuclei, {truth.max()} true objects; demo model, points_per_side "
          f"{args.points_per_side}, one contrast for the whole image")
    start = time.perf_counter()
    cut = _independent_fields(image, generator, args.tile, ir)
    t_cut = time.perf_counter() - start
    print(f"  independent fields of {args.tile} px: mSA {mean_segmentation_accuracy(truth, cut):.3f}, "
          f"found@0.5 {found_fraction(truth, cut):.3f}, {t_cut:.0f} s")
    for halo in args.halos:
        start = time.perf_counter()
        result = segment_tiled(image, generator, tile=args.tile, halo=halo, intensity_range=ir)
        t = time.perf_counter() - start
        print(f"  tiled, halo {halo:>3} px:            mSA {mean_segmentation_accuracy(truth, result.labels):.3f}, "
              f"found@0.5 {found_fraction(truth, result.labels):.3f}, {t:.0f} s ({t / t_cut:.2f}x the fields' time); "
              f"{result.summary()}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("memory", "quality", "memory-child"))
    p.add_argument("--size", type=int, default=10000)
    p.add_argument("--source", choices=("tiff", "zarr"), default="tiff")
    p.add_argument("--tile", type=int, default=None, help="default: 1024 for memory, 256 (the demo's input) for quality")
    p.add_argument("--halo", type=int, default=128)
    p.add_argument("--halos", type=int, nargs="+", default=[32, 64])
    p.add_argument("--points-per-side", type=int, default=24)
    p.add_argument("--msa-size", type=int, default=1536)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default="/tmp/napari-sam-bench-tiles")
    p.add_argument("--paths", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.what == "memory-child":
        print(json.dumps(_memory_child(args)))
        return
    print(f"{cpu_summary()}; load {load_average()}", flush=True)
    if args.what == "memory":
        args.tile = args.tile or 1024
        run_memory(args)
    else:
        args.tile = args.tile or 256  # the demo model's input: each field at full resolution
        run_quality(args)


if __name__ == "__main__":
    main()
