"""Saving labels to TIFF, and opening them again with their voxel size.

The labels are written as they are (uint32 stays uint32) with tifffile. The
layer's scale and translate (voxel size and origin, in the image's physical
units) go into the TIFF's JSON description, and the in-plane pixel size also
into the standard resolution tags, so other programs read the pixel size too.
:func:`read_labels_tiff` restores data, scale and translate.

Saving never harms an earlier file: the TIFF is written to a temporary file
beside the target and moved over it only when complete (:mod:`napari_sam.atomic`),
so a full disk or a killed process leaves the old file as it was. Reading
refuses a file whose image data is cut short (a copy interrupted, a file
written by another program that crashed) instead of returning part of it.

napari calls :func:`write_labels_tiff` through the manifest's writer
contribution (File > Save Selected Layers... with a ``.tif`` name; npe2 picks
it over napari's builtin writer for ``*.labels.tif`` names) and
:func:`get_labels_reader` for files saved as ``*.labels.tif``.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import tifffile

from .atomic import write_atomically

# Marks the files we wrote, so that reading knows where scale and translate are.
_MARKER = "napari-sam-annotator labels"
_EXTENSIONS = (".tif", ".tiff")
# The names our reader claims in napari (the manifest's reader patterns).
LABELS_FILE_PATTERNS = tuple(f"*.labels{e}" for e in _EXTENSIONS)


def _floats(name: str, values, ndim: int) -> list[float]:
    if values is None:
        return [1.0 if name == "scale" else 0.0] * ndim
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers, one per axis, got {values!r}") from None
    if len(out) != ndim:
        raise ValueError(f"{name} has {len(out)} value(s) but the labels have {ndim} axes")
    if not all(np.isfinite(out)) or (name == "scale" and min(out) <= 0):
        raise ValueError(f"{name} must be finite{' and positive' if name == 'scale' else ''}, got {out}")
    return out


def write_labels_tiff(path: str, data, attributes: dict | None = None) -> list[str]:
    """Write one labels layer to ``path`` (.tif/.tiff); returns ``[path]`` as napari expects."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file name, got {type(path).__name__}")
    target = Path(path)
    if target.suffix.lower() not in _EXTENSIONS:
        raise ValueError(f"labels are saved as TIFF: the file name must end in .tif or .tiff, got {target.name!r}")
    arr = np.asarray(data)
    if arr.dtype.kind not in "uib":
        raise TypeError(f"labels must be integers, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"labels must have at least 2 dimensions, got shape {arr.shape}")
    attributes = dict(attributes or {})
    scale = _floats("scale", attributes.get("scale"), arr.ndim)
    translate = _floats("translate", attributes.get("translate"), arr.ndim)
    description = {
        "format": _MARKER,
        "shape": list(arr.shape),
        "scale": scale,
        "translate": translate,
        "name": str(attributes.get("name", target.stem)),
    }
    # Resolution tags are pixels per unit: the inverse of the (y, x) pixel size.
    resolution = (1.0 / scale[-1], 1.0 / scale[-2])
    contiguous = np.ascontiguousarray(arr)

    def write(file) -> None:
        # A FileHandle with a name: tifffile cannot name an os.fdopen() stream itself.
        with tifffile.FileHandle(file, mode="wb", name=target.name) as handle:
            tifffile.imwrite(
                handle,
                contiguous,
                description=json.dumps(description),
                metadata=None,
                resolution=resolution,
                compression="zlib",
                # Labels are never colour: without this, tifffile stores a stack of 3 or 4
                # slices as one RGB(A) image, which other programs then show as colour.
                photometric="minisblack",
                bigtiff=arr.nbytes > 2**31,
            )

    # Overwriting a saved file must not destroy it when the disk fills up or
    # the process dies halfway: the new file replaces the old one only when whole.
    write_atomically(target, write, temp_prefix=f".{target.name}.")
    return [str(target)]


def read_labels_tiff(path) -> tuple[np.ndarray, dict]:
    """Data and layer attributes (scale, translate, name) of a labels TIFF written above.

    Any other TIFF is read as plain data with the pixel size from its
    resolution tags where present. A file whose image data is cut short raises
    ``ValueError`` rather than returning part of the labels.
    """
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"no such labels file: {target}")
    problem = None
    try:
        with tifffile.TiffFile(target) as tif:
            problem = _missing_data(tif)
            if problem is None:
                data = tif.asarray()
                page = tif.pages[0]
                meta = _our_description(page.description or "")
                resolution = _pixel_size(page)
    except (tifffile.TiffFileError, zlib.error, struct.error, EOFError, ValueError) as err:
        problem = f"it is damaged or incomplete ({err})"
    if problem is not None:
        raise ValueError(f"cannot read labels file {target}: {problem}; if it was being copied or saved, copy or save it again")
    attributes: dict = {"name": target.name.split(".")[0]}
    if meta is not None:
        expected = meta.get("shape")
        if isinstance(expected, list) and tuple(expected) != data.shape:
            raise ValueError(
                f"cannot read labels file {target}: it is incomplete (it holds an array of shape "
                f"{data.shape} but was saved with shape {tuple(expected)}); if it was being copied, copy it again"
            )
        attributes.update(_saved_attributes(meta, data.ndim, target))
    elif resolution is not None and data.ndim >= 2:
        attributes["scale"] = (1.0,) * (data.ndim - 2) + resolution
    return data, attributes


def _pixel_size(page) -> tuple[float, float] | None:
    """(y, x) pixel size from the resolution tags, None where the file records none.

    tifffile (and so napari's builtin writer) writes 1 pixel per unit with no
    unit when it is given no resolution: that is no pixel size at all.
    """
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None
    (xn, xd), (yn, yd) = tags["XResolution"].value, tags["YResolution"].value
    if not (xn and yn and xd and yd):
        return None
    unit = tags.get("ResolutionUnit")
    if (xn, xd) == (yn, yd) and xn == xd and (unit is None or unit.value == tifffile.RESUNIT.NONE):
        return None
    return (yd / yn, xd / xn)


def _our_description(description: str) -> dict | None:
    """The JSON description written above, or None for a TIFF of another program."""
    try:
        meta = json.loads(description)
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == _MARKER else None


def _saved_attributes(meta: dict, ndim: int, target: Path) -> dict:
    """scale, translate and name from our description; a damaged field falls back with a warning."""
    attributes = {}
    for field in ("scale", "translate"):
        try:
            attributes[field] = tuple(_floats(field, meta[field], ndim))
        except (KeyError, TypeError, ValueError) as err:
            fallback = "1" if field == "scale" else "0"
            detail = "missing" if isinstance(err, KeyError) else f"unusable ({err})"
            warnings.warn(
                f"labels file {target}: the saved {field} is {detail}; using {fallback} on every axis",
                stacklevel=3,
            )
            attributes[field] = (1.0 if field == "scale" else 0.0,) * ndim
    if isinstance(meta.get("name"), str) and meta["name"]:
        attributes["name"] = meta["name"]
    return attributes


def _missing_data(tif: tifffile.TiffFile) -> str | None:
    """What is missing when a page's image data lies (partly) past the end of the file, else None.

    A TIFF cut short (an interrupted copy, a writer that died) may still parse:
    its first pages read fine and the rest is missing, or a page's data ends early.
    """
    size = tif.filehandle.size
    for index, page in enumerate(tif.pages):
        ends = [offset + count for offset, count in zip(page.dataoffsets, page.databytecounts)]
        if ends and max(ends) > size:
            return f"it is truncated (page {index + 1} needs {max(ends)} bytes, the file has {size})"
    return None


def get_labels_reader(path):
    """npe2 reader hook: a reader for one ``*.labels.tif`` file, else None."""
    if isinstance(path, (list, tuple)) or not str(path).lower().endswith(tuple(p[1:] for p in LABELS_FILE_PATTERNS)):
        return None
    return _read_as_layer_data


def _read_as_layer_data(path):
    data, attributes = read_labels_tiff(path)
    if "scale" not in attributes:
        # Typically saved by napari's builtin writer (File > Save Selected Layers
        # with its "napari builtins" file type), which keeps the labels only.
        warnings.warn(
            f"labels file {path} records no voxel size (it was not saved by SAM Annotator); "
            "it opens with a scale of 1 on every axis",
            stacklevel=2,
        )
    return [(data, attributes, "labels")]
