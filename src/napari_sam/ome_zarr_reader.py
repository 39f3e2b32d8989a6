"""Open an OME-Zarr folder in napari lazily: every resolution level as one multiscale layer, its labels too.

A slide scan of 10,000 x 10,000 pixels or more is shown through napari's
multiscale layers: each level is a dask array over the zarr store, so napari
reads only the chunks of the level and the region on screen, and the SAM
Annotator reads only the tiles a click needs. The voxel size and the axes come
from the NGFF metadata (0.4 in ``.zattrs``, 0.5 in ``zarr.json``), so
measurements and propagation through z use the real spacing.

Also opens what ``napari-sam-annotator segment`` writes for OME-Zarr inputs
(``NAME.ome.zarr`` with ``labels/sam``): the labels, and the input image it
names when that is still where it was. Nothing is ever written here.
"""

from __future__ import annotations

from pathlib import Path

from .batch.readers import ome_axes, ome_scale

#: Axes napari shows as sliders or the plane; "c" becomes one layer per channel.
_CHANNEL = "c"


def get_ome_zarr_reader(path):
    """npe2 reader hook: a reader for one OME-Zarr folder (multiscales metadata), else None."""
    if isinstance(path, (list, tuple)):
        return None
    folder = Path(path)
    if not folder.is_dir() or _ngff(folder) is None:
        return None
    return read_ome_zarr


def read_ome_zarr(path) -> list[tuple]:
    """napari layer data for the OME-Zarr at ``path``: its image (if any), then its labels groups."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    layers = []
    meta = _ngff_attrs(root)
    if "multiscales" in meta:
        layers.append(_layer(root, meta, Path(path), "image"))
    else:
        source = dict(root.attrs).get("napari-sam-annotator", {}).get("input")
        if source and Path(source).is_dir() and _ngff(Path(source)) is not None:
            # segment's output: show the image it was made from under its labels
            source_root = zarr.open_group(str(source), mode="r")
            layers.append(_layer(source_root, _ngff_attrs(source_root), Path(source), "image"))
    if "labels" in root:
        group = root["labels"]
        for name in _ngff_attrs(group).get("labels", []):
            if name in group:
                layers.append(_layer(group[name], _ngff_attrs(group[name]), Path(path) / "labels" / name, "labels"))
    if not layers:
        raise ValueError(f"{path} is an OME-Zarr without an image or labels napari can show")
    return layers


def _layer(group, meta: dict, path: Path, kind: str) -> tuple:
    import dask.array as da

    multiscale = meta["multiscales"][0]
    datasets = multiscale.get("datasets") or []
    if not datasets:
        raise ValueError(f"{path}: its 'multiscales' metadata lists no datasets")
    missing = [d["path"] for d in datasets if d["path"] not in group]
    if missing:
        raise ValueError(f"{path}: the levels {missing} named in its metadata are missing")
    levels = [da.from_zarr(group[d["path"]]) for d in datasets]
    ndim = levels[0].ndim
    names, units = ome_axes(multiscale, ndim, path)
    scale = ome_scale(multiscale, datasets[0], ndim)
    attributes = {"name": multiscale.get("name") or path.name, "metadata": {"ome_zarr": str(path), "axes": names}}
    if len(levels) > 1:
        attributes["multiscale"] = True
    data = levels if len(levels) > 1 else levels[0]
    if kind == "image" and _CHANNEL in names and levels[0].shape[names.index(_CHANNEL)] > 1:
        c = names.index(_CHANNEL)
        attributes["channel_axis"] = c
        scale = scale[:c] + scale[c + 1:]
        names = names[:c] + names[c + 1:]
    attributes["scale"] = scale
    spatial_units = [u for n, u in zip(names, units) if n in "zyx" and u]
    if spatial_units:
        attributes["metadata"]["unit"] = spatial_units[-1]
    return data, attributes, kind


def _ngff(folder: Path) -> dict | None:
    """The folder's NGFF attributes when it is a zarr group with multiscales or labels, else None."""
    if not ((folder / ".zattrs").exists() or (folder / "zarr.json").exists() or (folder / ".zgroup").exists()):
        return None
    import zarr

    try:
        meta = _ngff_attrs(zarr.open_group(str(folder), mode="r"))
    except Exception:  # not a zarr group napari should hand to us
        return None
    if "multiscales" in meta or (folder / "labels").is_dir():
        return meta
    return None


def _ngff_attrs(group) -> dict:
    attrs = dict(group.attrs)
    return dict(attrs.get("ome", attrs))  # NGFF 0.5 keeps its metadata under "ome"
