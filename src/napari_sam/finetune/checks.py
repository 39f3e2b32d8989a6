"""What is checked before a fine-tuning run starts, so it does not fail minutes later.

* Enough labelled objects in the series: the labels the series saved in
  ``DIR/labels/<stem>.tif``, for the images in ``DIR/images/`` or ``DIR``.
* One run per series at a time, also across napari windows: a lock file in
  the models folder names the process that runs it; the lock of a process
  that is gone (napari was killed) is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np

TIFF_SUFFIXES = (".tif", ".tiff")
# Fewer objects than this teach the model nothing it keeps (and the held-out
# share would be a handful of objects): label more before fine-tuning.
MIN_OBJECTS = 10
LOCK_NAME = ".finetune.lock"
FRESH_LOCK_S = 10.0  # a lock file this young but unreadable is being written by its owner


def image_folder(series) -> Path:
    """Where the series' images are: ``DIR/images`` (the training layout) or DIR itself."""
    series = Path(series)
    return series / "images" if (series / "images").is_dir() else series


def series_of_image(path) -> Path:
    """The series folder of one of its image files: ``DIR/images/x.tif`` or ``DIR/x.tif`` -> DIR."""
    parent = Path(path).parent
    return parent.parent if parent.name == "images" else parent


def count_labelled_objects(series) -> dict[str, int]:
    """Objects per labelled image of the series folder (images without labels, or empty ones, left out).

    An object is one non-zero id of a label file (a stack's id counts once).
    """
    import tifffile

    series = Path(series)
    if not series.is_dir():
        raise ValueError(f"the series folder {series} does not exist (or is not a folder)")
    labels_dir = series / "labels"
    images = image_folder(series)
    stems = {p.stem for p in images.iterdir() if p.suffix.lower() in TIFF_SUFFIXES} if images.is_dir() else set()
    counts = {}
    for p in sorted(labels_dir.iterdir()) if labels_dir.is_dir() else ():
        if p.suffix.lower() not in TIFF_SUFFIXES or p.stem not in stems or p.name.startswith("."):
            continue
        try:
            labels = np.asarray(tifffile.imread(p))
        except Exception as err:  # tifffile raises many kinds for a bad file
            raise ValueError(f"the label file {p} cannot be read ({type(err).__name__}: {err}); fix or remove it") from None
        if labels.dtype.kind not in "uib":
            raise ValueError(f"the label file {p} is not an integer label image (dtype {labels.dtype}); fix or remove it")
        n = int(np.count_nonzero(np.unique(labels)))
        if n:
            counts[p.stem] = n
    return counts


def check_enough_objects(series, held_out: float = 0.0) -> dict[str, int]:
    """Raise a ValueError saying what to label when the series cannot be trained on; else the counts."""
    if not 0 <= held_out < 1:
        raise ValueError(f"the held-out share must lie in [0, 1), got {held_out}")
    counts = count_labelled_objects(series)
    total = sum(counts.values())
    if total < MIN_OBJECTS:
        raise ValueError(
            f"too few labelled objects to fine-tune on: {total} in {len(counts)} image(s) of {series}, "
            f"at least {MIN_OBJECTS} are needed; label more objects (and let the series save them) first"
        )
    if held_out > 0 and len(counts) < 2:
        raise ValueError(
            f"holding out a share of the images needs at least 2 labelled images, {series} has {len(counts)}; "
            "label another image, or set the held-out share to 0"
        )
    return counts


# ------------------------------------------------------------------ one run per series
def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap test: a lock on Windows is only taken over by its owner
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """``models_folder/.finetune.lock`` while a run of this process trains on the series."""

    def __init__(self, models_folder) -> None:
        self.path = Path(models_folder) / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        """Take the lock, or raise a ValueError naming the run that holds it."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None and self._age() < FRESH_LOCK_S:  # another process is writing it right now
                    owner = {"pid": "?", "host": "?", "started": "just now"}
                if owner is not None and not (owner.get("host") == me["host"] and not _alive(int(owner.get("pid", -1)))):
                    raise ValueError(
                        f"a fine-tuning run is already running on this series (process {owner.get('pid')} on "
                        f"{owner.get('host')}, since {owner.get('started')}): wait for it to end or cancel it"
                    ) from None
                self.path.unlink(missing_ok=True)  # its process is gone (napari was killed): take it over
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise ValueError(f"cannot take the lock {self.path}: another process takes it at the same time")

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return float("inf")

    def _owner(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else None
        except (OSError, ValueError):
            return None  # unreadable or half-written: stale unless fresh (see acquire)

    def release(self) -> None:
        if self.held:
            self.held = False
            owner = self._owner()
            if owner is None or owner.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
