"""Inputs for the batch tests: small generated images as TIFF, .npy and OME-Zarr (NGFF 0.4 and 0.5)."""

import hashlib
import os
from pathlib import Path

import numpy as np
import zarr

from napari_sam.synthetic import make_nuclei_2d, make_nuclei_3d

FAST = ["--points-per-side", "8", "--model", "demo", "--no-cache", "--precision", "fp32"]


def nuclei(seed=0, shape=(64, 64)):
    return make_nuclei_2d(shape, n_objects=(4, 6), seed=seed)[0]


def nuclei_stack(seed=0, shape=(2, 64, 64)):
    return make_nuclei_3d(shape, n_objects=(3, 4), seed=seed)[0]


def write_ome_zarr(path, data, axes="zyx", scale=None, version="0.4", chunks=None):
    """A one-level OME-Zarr image as microscopes' converters write it (bioformats2raw, ome-zarr-py)."""
    v3 = version == "0.5"
    root = zarr.open_group(str(path), mode="w", zarr_format=3 if v3 else 2)
    scale = list(scale or [1.0] * data.ndim)
    kinds = {"t": "time", "c": "channel"}
    multiscale = {"name": Path(path).name, "axes": [{"name": a, "type": kinds.get(a, "space"),
                                                     **({"unit": "micrometer"} if a in "zyx" else {})} for a in axes],
                  "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}]}
    if v3:
        root.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
        extra = {"dimension_names": list(axes)}
    else:
        root.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
        extra = {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
    chunks = chunks or tuple(1 if a in "tcz" else 32 for a in axes)
    array = root.create_array("0", shape=data.shape, chunks=chunks, dtype=data.dtype, **extra)
    array[...] = data
    return Path(path)


def fingerprint(folder):
    """Every file under ``folder`` with its bytes' hash and mtime: what "never written to" is checked against."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = Path(root) / name
            out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def make_read_only(folder):
    for root, dirs, files in os.walk(folder):
        for name in files:
            os.chmod(Path(root) / name, 0o444)
        for name in dirs:
            os.chmod(Path(root) / name, 0o555)
    os.chmod(folder, 0o555)


def make_writable(folder):
    os.chmod(folder, 0o755)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(Path(root) / name, 0o755)
        for name in files:
            os.chmod(Path(root) / name, 0o644)
