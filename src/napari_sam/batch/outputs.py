"""Writing one input's results into the results folder, whole or not at all, in the input's format family.

Per input ``NAME`` (its sub-folders kept):

* ``NAME.objects.csv``: one row per object (label, area, box, scores ...);
* TIFF and .npy inputs: ``NAME.labels.tif``, uint32 labels with the voxel size
  (the annotator's labels writer: napari opens it with the right scale);
* OME-Zarr inputs: ``NAME.ome.zarr/labels/sam/``, an OME-NGFF labels group
  (``multiscales`` with the input's axes, units and voxel size, and
  ``image-label``) of the input's NGFF version (0.4: zarr v2, 0.5: zarr v3).
  Its ``source`` is ``../../`` as the spec has it: copy ``labels/`` into the
  input image to attach them to it. The labels are a pyramid, whatever the
  input's levels (:func:`pyramid_levels`): level 0 at full size, then each
  level half the one before in y and x (z kept), by nearest neighbour (every
  second pixel: labels are never averaged into ids that do not exist), until
  the longer side is :data:`SMALLEST_LEVEL` pixels or less; napari then shows
  a slide-sized label image as fast as its image.

Nothing is ever written next to the input. Each output is written under a
hidden temporary name and renamed when complete (a folder rename too, so
the OME-Zarr group appears whole), the table first and the labels last: an
input counts as finished when both final names exist, and a run killed at
any moment leaves either those or nothing that carries a final name.
"""

from __future__ import annotations

import csv
import errno
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

LABELS_NAME = "sam"  # the labels group's name inside NAME.ome.zarr/labels/
SMALLEST_LEVEL = 256  # pyramid: levels are halved until their longer y/x side is this or less
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class DiskFull(OSError):
    """The results folder's disk (or quota) is full: every further input would fail the same way."""


def output_paths(out: Path, name: str, kind: str) -> tuple[Path, Path]:
    """(labels, table) of input ``name``: the labels a file or a folder, by the input's format family."""
    labels = out / (f"{name}.ome.zarr" if kind == "ome-zarr" else f"{name}.labels.tif")
    return labels, out / f"{name}.objects.csv"


def slices_folder(out: Path, name: str, kind: str) -> Path:
    """Where a stack's slice tasks save their labels until they are linked (hidden: never taken for a result)."""
    return output_paths(out, name, kind)[0].parent / f".{Path(name).name}.slices"


def is_finished(out: Path, name: str, kind: str) -> bool:
    return all(p.exists() for p in output_paths(out, name, kind))


def write_results(out: Path, name: str, kind: str, labels: np.ndarray, table: list[dict], voxel_size,
                  ome: dict | None) -> Path:
    """Write the table, then the labels (see the module); DiskFull when the disk is full, nothing half kept."""
    labels_path, table_path = output_paths(out, name, kind)
    labels_path.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(labels_path)
    # Slices a cluster run saved for this input are of no use once it is written (by that run or the plain loop).
    shutil.rmtree(slices_folder(out, name, kind), ignore_errors=True)
    try:
        write_table(table_path, table, labels.ndim)
        if kind == "ome-zarr":
            write_ome_zarr_labels(labels_path, labels, voxel_size, ome or {})
        else:
            write_tiff_labels(labels_path, labels, voxel_size)
    except OSError as err:
        if err.errno in _DISK_FULL:
            raise DiskFull(err.errno, f"the disk of the results folder {out} is full ({os.strerror(err.errno)}): "
                           f"nothing of {name} was kept; free some space and run again to resume") from None
        raise
    return labels_path


def write_table(path: Path, table: list[dict], ndim: int = 2) -> None:
    from ..atomic import write_atomically
    from ..auto.labels import TABLE_COLUMNS

    columns = list(table[0]) if table else list(TABLE_COLUMNS)
    if not table and ndim == 3:  # an empty stack's table still has the stack's columns
        columns[1:1] = ["bbox_z0", "bbox_z1", "centroid_z"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(table)
    write_atomically(path, lambda f: f.write(text.getvalue().encode()), temp_prefix=f".{path.name}.")


def write_tiff_labels(path: Path, labels: np.ndarray, voxel_size) -> None:
    from ..writers import write_labels_tiff

    attributes = {} if voxel_size is None else {"scale": list(voxel_size)}
    write_labels_tiff(str(path), labels.astype(np.uint32, copy=False), attributes)


def write_ome_zarr_labels(path: Path, labels: np.ndarray, voxel_size, ome: dict) -> None:
    """``path/labels/sam`` as an OME-NGFF labels group, written in a hidden folder and renamed into place."""
    import zarr

    version = ome.get("version", "0.4")
    axes = ome.get("axes") or list("zyx"[-labels.ndim:])
    units = ome.get("units") or [None] * labels.ndim
    scale = [float(s) for s in voxel_size] if voxel_size is not None else [1.0] * labels.ndim
    v3 = version.startswith("0.5")
    axes_meta = [{"name": a, "type": "space", **({"unit": u} if u else {})} for a, u in zip(axes, units)]
    levels = pyramid_levels(labels.shape, axes)
    # Level k takes every 2**k-th pixel from pixel 0: its pixel i is level 0's pixel i * 2**k, so a scale
    # alone (no translation) puts it where it belongs.
    datasets = [{"path": str(k), "coordinateTransformations": [
        {"type": "scale", "scale": [s * (2**k if a in "yx" else 1) for s, a in zip(scale, axes)]}]}
        for k in range(levels)]
    multiscale = {"name": LABELS_NAME, "axes": axes_meta, "datasets": datasets, "type": "nearest",
                  "metadata": {"method": "every second pixel in y and x (nearest neighbour)"}}
    image_label = {"version": version, "source": {"image": "../../"}}

    def ngff(attrs: dict) -> dict:
        # NGFF 0.5 keeps everything under "ome" with one version; 0.4 versions each multiscale.
        if v3:
            return {"ome": {"version": version, **attrs}}
        if "multiscales" in attrs:
            attrs["multiscales"] = [{"version": version, **m} for m in attrs["multiscales"]]
        return attrs

    temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        root = zarr.open_group(str(temp), mode="w", zarr_format=3 if v3 else 2)
        root.attrs["napari-sam-annotator"] = {"input": ome.get("source"), "labels": f"labels/{LABELS_NAME}"}
        group = root.create_group("labels")
        group.attrs.update(ngff({"labels": [LABELS_NAME]}))
        image = group.create_group(LABELS_NAME)
        image.attrs.update(ngff({"multiscales": [multiscale], "image-label": image_label}))
        extra = {"dimension_names": axes} if v3 else {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
        for k in range(levels):
            level = downsample(labels, axes, k)
            chunks = tuple(1 if a == "z" else min(n, 1024) for a, n in zip(axes, level.shape))
            array = image.create_array(str(k), shape=level.shape, chunks=chunks, dtype="uint32", fill_value=0,
                                       **extra)
            store_level(array, level)
        _replace_folder(temp, path)
        temp = None
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def pyramid_levels(shape, axes) -> int:
    """How many levels the labels get: halving y and x until the longer side is SMALLEST_LEVEL or less."""
    side, levels = max(n for n, a in zip(shape, axes) if a in "yx"), 1
    while side > SMALLEST_LEVEL:
        side, levels = (side + 1) // 2, levels + 1
    return levels


def downsample(labels: np.ndarray, axes, level: int) -> np.ndarray:
    """Level ``level`` of the pyramid: every 2**level-th pixel in y and x, from pixel 0 (a view, no copy)."""
    step = 2**level
    return labels[tuple(slice(None, None, step) if a in "yx" else slice(None) for a in axes)]


def store_level(array, labels: np.ndarray) -> None:
    array[...] = labels.astype(np.uint32, copy=False)


def _replace_folder(temp: Path, path: Path) -> None:
    """Rename ``temp`` to ``path``; an older ``path`` (--overwrite) is moved aside first and removed after."""
    from ..atomic import fsync_folder

    old = None
    if path.exists():
        old = path.parent / f".{path.name}.{os.getpid()}.old"
        os.replace(path, old)
    os.replace(temp, path)
    fsync_folder(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(labels_path: Path) -> None:
    """Temporary outputs of this input left by a killed run (never a final name)."""
    for stem in (labels_path.name, labels_path.name.replace(".labels.tif", ".objects.csv").replace(
            ".ome.zarr", ".objects.csv")):
        for leftover in labels_path.parent.glob(f".{stem}.*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                try:
                    leftover.unlink()
                except OSError:
                    pass
