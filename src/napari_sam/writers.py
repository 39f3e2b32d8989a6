"""Saving labels to TIFF, and opening them again with their voxel size.

The labels are written as they are (uint32 stays uint32) with tifffile. The
layer's scale and translate (voxel size and origin, in the image's physical
units) go into the TIFF's JSON description, and the in-plane pixel size also
into the standard resolution tags, so other programs read the pixel size too.
:func:`read_labels_tiff` restores data, scale and translate.

napari calls :func:`write_labels_tiff` through the manifest's writer
contribution (File > Save Selected Layers... with a ``.tif`` name) and
:func:`get_labels_reader` for files saved as ``*.labels.tif``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import tifffile

# Marks the files we wrote, so that reading knows where scale and translate are.
_MARKER = "napari-sam-annotator labels"
_EXTENSIONS = (".tif", ".tiff")


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
    tifffile.imwrite(
        target,
        np.ascontiguousarray(arr),
        description=json.dumps(description),
        metadata=None,
        resolution=resolution,
        compression="zlib",
        # Labels are never colour: without this, tifffile stores a stack of 3 or 4
        # slices as one RGB(A) image, which other programs then show as colour.
        photometric="minisblack",
        bigtiff=arr.nbytes > 2**31,
    )
    return [str(target)]


def read_labels_tiff(path) -> tuple[np.ndarray, dict]:
    """Data and layer attributes (scale, translate, name) of a labels TIFF written above.

    Any other TIFF is read as plain data with the pixel size from its
    resolution tags where present.
    """
    target = Path(path)
    if not target.is_file():
        raise FileNotFoundError(f"no such labels file: {target}")
    with tifffile.TiffFile(target) as tif:
        data = tif.asarray()
        page = tif.pages[0]
        description = page.description or ""
        try:
            meta = json.loads(description)
        except ValueError:
            meta = {}
        attributes: dict = {"name": target.name.split(".")[0]}
        if isinstance(meta, dict) and meta.get("format") == _MARKER:
            attributes.update(scale=tuple(meta["scale"]), translate=tuple(meta["translate"]), name=meta["name"])
        else:
            res = page.tags.get("XResolution"), page.tags.get("YResolution")
            if all(r is not None for r in res) and data.ndim >= 2:
                (xn, xd), (yn, yd) = res[0].value, res[1].value
                if xn and yn:
                    attributes["scale"] = (1.0,) * (data.ndim - 2) + (yd / yn, xd / xn)
    return data, attributes


def get_labels_reader(path):
    """npe2 reader hook: a reader for one ``*.labels.tif`` file, else None."""
    if isinstance(path, (list, tuple)) or not str(path).lower().endswith(tuple(f".labels{e}" for e in _EXTENSIONS)):
        return None
    return _read_as_layer_data


def _read_as_layer_data(path):
    data, attributes = read_labels_tiff(path)
    return [(data, attributes, "labels")]
