"""Opening one batch input lazily: TIFF (BigTIFF too) through tifffile's zarr view, .npy memory-mapped, OME-Zarr level 0.

Every reader returns an :class:`Opened`: the pixels as an array that reads
only what is indexed (a plane, a slice of a stack), the spatial axes
(``"yx"``, ``"zyx"``, ``"yxc"`` for RGB), the voxel size when the file records
one, and for OME-Zarr what the labels group must repeat (axes, units,
version). Inputs are opened read-only; nothing here ever writes to them.

Damaged inputs are refused here with what is wrong, because the readers
underneath stay quiet about it: a TIFF cut short may still parse (its last
pages then read as garbage or fail deep inside decoding), and zarr returns the
fill value for a chunk whose file is missing, so an OME-Zarr copied
incompletely would be segmented as if part of it were empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..tiles.reading import FixedAxes
from .inputs import Input

_SPATIAL = ("z", "y", "x")


@dataclass
class Opened:
    data: object  # numpy memmap or zarr array: indexing reads only what it needs
    axes: str  # "yx", "yxc" (RGB) or "zyx"
    voxel_size: tuple[float, ...] | None  # one per spatial axis (z y x or y x), None where unrecorded
    ome: dict | None = None  # OME-Zarr inputs: version, axes, units (for the labels group)
    _closers: list = field(default_factory=list)

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()


def open_input(item: Input, *, channel: int | None = None, allow_missing_chunks: bool = False) -> Opened:
    """Open ``item`` (see the module); ValueError saying what is wrong with a damaged or unusable file."""
    if item.kind == "ome-zarr":
        opened = _open_ome_zarr(Path(item.path), channel, allow_missing_chunks)
    elif item.kind == "tiff":
        opened = _open_tiff(Path(item.path))
    else:
        opened = _open_npy(Path(item.path))
    try:
        check_shape(opened.data.shape, opened.axes)
    except ValueError:
        opened.close()
        raise
    return opened


def axes_of_shape(shape) -> str:
    """The command's rule for TIFF and .npy: 2D is a plane, (y, x, 3|4) colour, other 3D a stack."""
    if len(shape) == 2:
        return "yx"
    if len(shape) == 3:
        return "yxc" if shape[-1] in (3, 4) else "zyx"
    raise ValueError(f"the image has shape {tuple(shape)}: give a 2D image, an RGB image or a 3D stack "
                     "(for more axes save one stack per file, or use an OME-Zarr with named axes)")


def check_shape(shape, axes: str) -> None:
    """Refuse images SAM cannot segment: thinner than 2 pixels, or empty."""
    plane = [n for n, a in zip(shape, axes) if a in "yx"]
    if min(plane) < 2 or 0 in shape:
        raise ValueError(f"the image of shape {tuple(shape)} has planes of {plane[0]} x {plane[1]} pixels: SAM needs "
                         "at least 2 pixels on both sides (a line profile or a 1-pixel strip is not an image; "
                         "check that the file holds the image you mean, with its axes in order)")


def _open_npy(path: Path) -> Opened:
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot read {path} as a NumPy array: {err}") from None
    return Opened(data, axes_of_shape(data.shape), None)


def _open_tiff(path: Path) -> Opened:
    import tifffile
    import zarr

    from ..writers import _missing_data, _pixel_size

    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, ValueError, OSError, EOFError) as err:
        raise ValueError(f"cannot read {path} as a TIFF: {err}; if it was being copied, copy it again") from None
    try:
        series = tif.series[0]
        problem = _missing_data(tif) or _series_cut_short(series, tif.filehandle.size)
        if problem is not None:
            raise ValueError(f"cannot read {path}: {problem}; if it was being copied or saved, copy or save it again")
        store = series.aszarr(level=0)
        data = zarr.open(store, mode="r")
        axes = axes_of_shape(data.shape)
        voxel_size = _tiff_voxel_size(tif, series.pages[0], axes, _pixel_size)
    except ValueError:
        tif.close()
        raise
    except (tifffile.TiffFileError, OSError, EOFError, KeyError, TypeError) as err:
        tif.close()
        raise ValueError(f"cannot read {path} as a TIFF: {err}") from None
    return Opened(data, axes, voxel_size, _closers=[store.close, tif.close])


def _series_cut_short(series, size: int) -> str | None:
    """A contiguous series (tifffile's and ImageJ's stacks) whose data runs past the end of the file.

    Its later pages' headers may be gone with the data, so the pages alone do not show it.
    """
    offset = series.dataoffset
    if offset is not None and offset + series.nbytes > size:
        return f"it is truncated (its {series.shape} image needs {offset + series.nbytes} bytes, the file has {size})"
    return None


def _tiff_voxel_size(tif, page, axes: str, pixel_size) -> tuple[float, ...] | None:
    """(z,) y, x from the resolution tags and ImageJ's ``spacing``; None when the file records no pixel size."""
    yx = pixel_size(page)
    if yx is None:
        return None
    if axes != "zyx":
        return tuple(yx)
    spacing = (tif.imagej_metadata or {}).get("spacing")
    return (float(spacing) if spacing else 1.0, *yx)


# ---------------------------------------------------------------------- OME-Zarr
def _open_ome_zarr(path: Path, channel: int | None, allow_missing_chunks: bool) -> Opened:
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as err:  # zarr raises many kinds for a damaged folder
        raise ValueError(f"cannot open {path} as an OME-Zarr: {type(err).__name__}: {err}") from None
    version = "0.5" if "ome" in attrs else str(attrs.get("multiscales", [{}])[0].get("version", "0.4"))
    meta = attrs.get("ome", attrs)
    try:
        multiscale = meta["multiscales"][0]
        level0 = multiscale["datasets"][0]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{path} has no usable OME-Zarr 'multiscales' metadata (datasets missing)") from None
    try:
        array = group[level0["path"]]
    except KeyError:
        raise ValueError(f"{path}: the level-0 array {level0['path']!r} named in its metadata is missing") from None
    names, units = ome_axes(multiscale, array.ndim, path)
    _check_chunks(array, path, level0["path"], allow_missing_chunks)
    scale = ome_scale(multiscale, level0, array.ndim)

    # Keep z, y, x; take one channel; refuse what this command cannot walk through yet.
    index, kept = [], []
    for axis, (name, size) in enumerate(zip(names, array.shape)):
        if name in _SPATIAL:
            index.append(slice(None))
            kept.append(axis)
        elif name == "c" and size > 1:
            if channel is None:
                raise ValueError(f"{path} has {size} channels (axis 'c'): pass --channel N (0 to {size - 1}) to "
                                 "segment one of them")
            if not 0 <= channel < size:
                raise ValueError(f"--channel {channel} does not exist: {path} has channels 0 to {size - 1}")
            index.append(channel)
        elif size == 1:
            index.append(0)
        else:
            raise ValueError(f"{path} has {size} entries along its axis {name!r}: segment one per run "
                             "(this command walks through z only)")
    view = FixedAxes(array, tuple(index))
    kept_names = "".join(names[a] for a in kept)
    if "y" not in kept_names or "x" not in kept_names:
        raise ValueError(f"{path} has axes {names}: an image needs 'y' and 'x'")
    ome = {"version": version, "axes": [names[a] for a in kept], "units": [units[a] for a in kept],
           "source": str(path)}
    return Opened(view, kept_names, tuple(scale[a] for a in kept), ome)


def ome_axes(multiscale: dict, ndim: int, path: Path) -> tuple[list[str], list]:
    axes = multiscale.get("axes")
    if axes is None:  # NGFF 0.1/0.2 had none: always t, c, z, y, x
        names = ["t", "c", "z", "y", "x"][-ndim:]
        return names, [None] * ndim
    names = [a["name"] if isinstance(a, dict) else str(a) for a in axes]
    units = [a.get("unit") if isinstance(a, dict) else None for a in axes]
    if len(names) != ndim:
        raise ValueError(f"{path}: its metadata names {len(names)} axes {names} but level 0 has {ndim} dimensions")
    return [n.lower() for n in names], units


def ome_scale(multiscale: dict, dataset: dict, ndim: int) -> list[float]:
    """Level 0's voxel size: its own scale times the multiscale's, as NGFF composes them."""
    scale = [1.0] * ndim
    for transforms in (dataset.get("coordinateTransformations", []), multiscale.get("coordinateTransformations", [])):
        for t in transforms or []:
            if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
                scale = [a * float(b) for a, b in zip(scale, t["scale"])]
    return scale


def _check_chunks(array, path: Path, name: str, allow_missing: bool) -> None:
    """Refuse an array whose chunk files are not all there (zarr would read them as the fill value)."""
    stored, expected = array.nchunks_initialized, array.nchunks
    if stored < expected and not allow_missing:
        raise ValueError(
            f"{path}: level {name!r} has {expected - stored} of its {expected} chunk files missing (an incomplete "
            "copy or write?); zarr would read them as empty image. Copy it again, or pass --allow-missing-chunks "
            "if its writer leaves out chunks that hold only the fill value")
