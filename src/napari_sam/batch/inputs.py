"""Which images a batch run segments: files, folders and glob patterns, each with the name of its outputs.

* a file is taken as it is (a TIFF, a .npy array, or an OME-Zarr folder);
* a folder that is an OME-Zarr image (it holds ``.zattrs`` or ``zarr.json``
  with ``multiscales``) is one input; any other folder is searched
  recursively for TIFF, .npy and OME-Zarr inputs, and its sub-folders are
  kept in the outputs' names (``DIR/day1/a.tif`` -> ``OUT/day1/a.labels.tif``);
* a pattern with ``*``, ``?`` or ``[`` is expanded (``**`` crosses folders);
  the part before its first wildcard plays the folder's role for the names.

Two inputs that would write the same output, or an argument that finds
nothing, are refused before any work starts: a typo should not cost a night.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".tif", ".tiff", ".npy")
_WILDCARDS = "*?["


@dataclass(frozen=True)
class Input:
    path: Path  # the file or OME-Zarr folder as given or found
    name: str  # where its outputs go, relative to the results folder, without suffix: "day1/a"
    kind: str  # "tiff", "npy" or "ome-zarr"

    def __str__(self) -> str:
        return str(self.path)


def kind_of(path: Path) -> str | None:
    """"tiff", "npy", "ome-zarr" or None (not an input we read)."""
    if path.is_dir():
        return "ome-zarr" if is_ome_zarr(path) else None
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return "tiff"
    return "npy" if suffix == ".npy" else None


def is_ome_zarr(folder: Path) -> bool:
    """A folder with OME-Zarr image metadata (NGFF 0.4: ``.zattrs``; 0.5: ``zarr.json`` with ``ome``)."""
    for name in (".zattrs", "zarr.json"):
        try:
            attrs = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if name == "zarr.json":
            attrs = attrs.get("attributes", {}) if isinstance(attrs, dict) else {}
            attrs = attrs.get("ome", attrs) if isinstance(attrs, dict) else {}
        if isinstance(attrs, dict) and "multiscales" in attrs:
            return True
    return False


def output_stem(path: Path) -> str:
    """``a.ome.tif`` -> ``a``, ``b.ome.zarr`` -> ``b``: the name before every suffix, as the annotator saves."""
    return path.name.split(".")[0] or path.name


def find_inputs(arguments) -> list[Input]:
    """Every input named by ``arguments`` (see the module), in a stable order; ValueError for a bad argument."""
    found: list[Input] = []
    for argument in arguments:
        text = str(argument)
        if any(c in text for c in _WILDCARDS) and not Path(text).exists():
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matches:
                raise ValueError(f"the pattern {text!r} matches no file; quote it so that the shell does not "
                                 "expand it, and check the folder and the suffix")
            base = _pattern_base(text)
            found += [_input(p, base) for p in matches if kind_of(p) is not None]
            continue
        path = Path(text).expanduser()
        if not path.exists():
            raise ValueError(f"the input {path} does not exist")
        kind = kind_of(path)
        if kind is not None:
            found.append(Input(path, output_stem(path), kind))
        elif path.is_dir():
            inside = list(_search(path, path))
            if not inside:
                raise ValueError(f"the folder {path} holds no TIFF (.tif/.tiff), .npy or OME-Zarr image")
            found += inside
        else:
            raise ValueError(f"{path} is neither a TIFF (.tif/.tiff), a NumPy (.npy) file nor an OME-Zarr folder")
    _refuse_clashes(found)
    return found


def _search(folder: Path, base: Path):
    """Inputs under ``folder``, recursively; an OME-Zarr folder is an input and is not searched further."""
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue  # hidden files and our own temporary outputs
        kind = kind_of(entry)
        if kind is not None:
            yield _input(entry, base)
        elif entry.is_dir():
            yield from _search(entry, base)


def _input(path: Path, base: Path) -> Input:
    try:
        parent = path.parent.relative_to(base)
    except ValueError:
        parent = Path()
    return Input(path, (parent / output_stem(path)).as_posix(), kind_of(path))


def _pattern_base(pattern: str) -> Path:
    head = pattern
    for c in _WILDCARDS:
        head = head.split(c)[0]
    return Path(head) if head.endswith(("/", "\\")) else Path(head).parent


def _refuse_clashes(found: list[Input]) -> None:
    by_name: dict[str, Input] = {}
    for item in found:
        other = by_name.get(item.name)
        if other is not None and other.path.resolve() != item.path.resolve():
            raise ValueError(f"{other.path} and {item.path} would both write OUT/{item.name}.*: rename one, or "
                             "give their folder instead of the files (sub-folders are kept in the names)")
        by_name[item.name] = item
    # The same file named twice (a folder and a pattern inside it) is segmented once.
    found[:] = list({i.name: i for i in found}.values())
