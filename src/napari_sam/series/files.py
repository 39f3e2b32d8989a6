"""Which files of a folder make an image series, in what order, and which are skipped and why.

Only TIFF images are taken (.tif/.tiff): the format microscopes write, which
keeps stacks and pixel sizes, and the one ``train --data DIR`` reads. Other
image files (PNG, JPEG, ...) are listed as skipped with the reason, so the
user knows why they are missing; anything else (notes, spreadsheets) is
ignored. Each image and each existing labels file is checked from its header
only (shape, type, data not cut short), so opening a series of large stacks
is quick and a damaged file costs one line in the skipped list, not the series.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import tifffile

TIFF_SUFFIXES = (".tif", ".tiff")
# Image files we recognise but do not read: told to the user rather than silently left out.
OTHER_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".czi", ".nd2", ".lif", ".npy", ".zarr")


@dataclass(frozen=True)
class SeriesImage:
    """One image of the series: its file, labels file and the shape its labels must have."""

    name: str  # the file name without its extension: also the labels' name
    path: Path
    labels_path: Path
    labels_shape: tuple[int, ...]  # the image's shape without a colour axis


def natural_key(name: str) -> list:
    """Sort key putting img2 before img10 (digits compare as numbers, letters without case)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def images_folder(folder: Path) -> Path:
    """``DIR/images`` when it exists (the training layout), else ``DIR`` itself."""
    inner = folder / "images"
    return inner if inner.is_dir() else folder


def labels_shape_of(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The labels' shape for an image shape: a last axis of 3 or 4 is colour (as napari guesses it)."""
    if len(shape) >= 3 and shape[-1] in (3, 4):
        return tuple(shape[:-1])
    return tuple(shape)


def tiff_shape(path: Path) -> tuple[tuple[int, ...], str]:
    """Shape and dtype kind of a TIFF's first series, from its header; ValueError if damaged."""
    try:
        with tifffile.TiffFile(path) as tif:
            size = tif.filehandle.size
            for index, page in enumerate(tif.pages):
                ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts)]
                if ends and max(ends) > size:
                    raise ValueError(f"it is truncated (page {index + 1} needs {max(ends)} bytes, the file has {size})")
            series = tif.series[0]
            return tuple(int(n) for n in series.shape), series.dtype.kind
    except ValueError:
        raise
    except Exception as err:  # tifffile raises many kinds for a file that is not a TIFF
        raise ValueError(f"it is not a readable TIFF ({err})") from None


def scan(folder: Path) -> tuple[list[SeriesImage], list[tuple[str, str]]]:
    """The series' images in natural order, and (file name, reason) for each file skipped."""
    source = images_folder(folder)
    labels_dir = folder / "labels"
    found: list[SeriesImage] = []
    skipped: list[tuple[str, str]] = []
    taken: dict[str, Path] = {}
    files = sorted((p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: natural_key(p.name))
    for path in files:
        suffix = path.suffix.lower()
        if suffix in OTHER_IMAGE_SUFFIXES:
            skipped.append((path.name, "only TIFF images are read: convert it to .tif to annotate it"))
            continue
        if suffix not in TIFF_SUFFIXES:
            continue
        name = path.stem
        if name in taken:
            skipped.append((path.name, f"{taken[name].name} has the same name: both would share labels/{name}.tif"))
            continue
        try:
            shape, kind = tiff_shape(path)
        except ValueError as err:
            skipped.append((path.name, f"cannot read the image: {err}"))
            continue
        if len(labels_shape_of(shape)) < 2 or kind not in "uifb":
            skipped.append((path.name, f"not an image of at least 2 dimensions with numbers (shape {shape})"))
            continue
        labels_path = labels_dir / f"{name}.tif"
        problem = labels_problem(labels_path, labels_shape_of(shape))
        if problem is not None:
            skipped.append((path.name, problem))
            continue
        taken[name] = path
        found.append(SeriesImage(name, path, labels_path, labels_shape_of(shape)))
    return found, skipped


def labels_problem(labels_path: Path, expected: tuple[int, ...]) -> str | None:
    """Why an existing labels file cannot be used for an image of labels shape ``expected``, else None.

    Such an image is skipped rather than opened: its labels would be
    overwritten by the first save, and they are the user's work.
    """
    if not labels_path.exists():
        return None
    try:
        shape, kind = tiff_shape(labels_path)
    except ValueError as err:
        return (f"its labels file labels/{labels_path.name} cannot be read ({err}); "
                "fix or move it, then open the series again")
    if kind not in "uib":
        return f"its labels file labels/{labels_path.name} is not an integer label image; fix or move it"
    if len(shape) == len(expected) + 1 and shape[-1] == 1:
        shape = shape[:-1]
    if shape != expected:
        return (f"its labels file labels/{labels_path.name} has shape {shape} but the image needs {expected}; "
                "fix or move the labels file, then open the series again")
    return None
