"""A folder of images annotated one after the other, with labels saved beside them.

Layout (the one ``train --data DIR`` reads, so a series is a training set)::

    DIR/images/cell01.tif      the images (or directly DIR/cell01.tif ...), never written to
    DIR/labels/cell01.tif      their labels: integers, 0 = background, the image's shape without colour
    DIR/models/                fine-tuned models of this series
    DIR/.napari-sam/           where the user stopped, the done marks, the lock

A series may hold images of different sizes; each labels file must match its
image. Saving is atomic (a crash or a full disk leaves the previous labels
file whole) and never overwrites labels edited outside the app since they
were opened: ours then go to ``labels/NAME.conflict-TIME.tif`` and the
message says so (reopen the image to see the other version).
"""

from __future__ import annotations

import errno
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ..writers import _pixel_size, read_labels_tiff, write_labels_tiff
from .files import SeriesImage, images_folder, scan
from .lock import SeriesLock
from .state import SeriesState

STATE_FOLDER = ".napari-sam"


@dataclass(frozen=True)
class Saved:
    """Where a save went; ``conflict`` when the labels file had been changed outside the app."""

    path: Path
    conflict: bool = False
    message: str = ""


def _signature(path: Path):
    """Cheap identity of a file's content (None when absent): size, mtime and inode."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class ImageSeries:
    """The images of ``folder`` and their labels; see the module docstring for the layout."""

    def __init__(self, folder, read_only: bool = False) -> None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder: choose the folder that holds the images (or images/)")
        if folder.name == "images" and (folder.parent / "labels").is_dir():
            folder = folder.parent  # the inner folder of the training layout was chosen: the series is its parent
        self.folder = folder
        self.images_folder = images_folder(folder)
        self.labels_folder = folder / "labels"
        self.models_folder = folder / "models"
        self.state_folder = folder / STATE_FOLDER
        self._images, self.skipped = scan(folder)
        if not self._images:
            reasons = "".join(f"\n  {name}: {why}" for name, why in self.skipped)
            raise ValueError(f"no usable TIFF image in {self.images_folder}: put the images (.tif, .tiff) there"
                             + (f"; skipped:{reasons}" if reasons else ""))
        self.lock = SeriesLock(self.state_folder / "lock")
        self.read_only = True
        self.read_only_reason = "opened read-only on request" if read_only else ""
        if not read_only:
            self._take_lock()
        self.state = SeriesState(self.state_folder / "series.json")
        self._seen: dict[str, object] = {}  # name -> (signature, digest) of the labels file as last read or saved
        self._conflicts: dict[str, Path] = {}  # name -> our copy while the labels file was changed outside
        if not self.read_only:
            self._remove_leftovers()

    def _take_lock(self) -> None:
        try:
            self.state_folder.mkdir(exist_ok=True)
            got = self.lock.acquire()
        except OSError as err:
            self.read_only_reason = f"the folder cannot be written ({err.strerror or err}): labels cannot be saved"
            return
        if got:
            self.read_only = False
        else:
            self.read_only_reason = (f"this series is open in {self.lock.holder.describe()}: it is opened read-only "
                                     f"and nothing is saved here. Close it there (or, if that process is gone, "
                                     f"delete {self.lock.path}) and open the series again")

    def _remove_leftovers(self) -> None:
        """Temporary files of saves cut short by a crash (the saved files themselves are whole)."""
        for folder in (self.labels_folder, self.state_folder):
            if folder.is_dir():
                for tmp in folder.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)

    def close(self) -> None:
        """Let another window save to this series."""
        self.lock.release()
        self.read_only = True
        self.read_only_reason = self.read_only_reason or "the series was closed"

    # ------------------------------------------------------------------ the list
    def __len__(self) -> int:
        return len(self._images)

    @property
    def names(self) -> list[str]:
        return [im.name for im in self._images]

    def _image(self, i) -> SeriesImage:
        if isinstance(i, str):
            if i not in self.names:
                raise ValueError(f"no image named {i!r} in this series")
            i = self.names.index(i)
        if not 0 <= int(i) < len(self._images):
            raise ValueError(f"image {i} is out of range: this series has {len(self)} images (0-{len(self) - 1})")
        return self._images[int(i)]

    def index(self, i) -> int:
        return self._images.index(self._image(i))

    def image_path(self, i) -> Path:
        return self._image(i).path

    def labels_path(self, i) -> Path:
        return self._image(i).labels_path

    def labels_shape(self, i) -> tuple[int, ...]:
        return self._image(i).labels_shape

    # ------------------------------------------------------------------ where the user is
    @property
    def current(self) -> int:
        """The image the user was on (0 at the first opening, or when that image is gone)."""
        return self.names.index(self.state.current) if self.state.current in self.names else 0

    def go(self, i) -> int:
        self.state.current = self._image(i).name
        self._save_state()
        return self.current

    def mark_done(self, i, done: bool = True) -> None:
        (self.state.done.add if done else self.state.done.discard)(self._image(i).name)
        self._save_state()

    def is_done(self, i) -> bool:
        return self._image(i).name in self.state.done

    @property
    def done_count(self) -> int:
        return len(self.state.done & set(self.names))

    def counter_text(self, i=None) -> str:
        """ "image 3 of 12, 5 done" for the counter of a dock."""
        position = self.current if i is None else self.index(i)
        return f"image {position + 1} of {len(self)}, {self.done_count} done"

    def _save_state(self) -> None:
        if not self.read_only:  # a read-only window keeps its place in memory only
            self.state.save()

    # ------------------------------------------------------------------ pixels
    def read_image(self, i) -> np.ndarray:
        path = self.image_path(i)
        try:
            return tifffile.imread(path)
        except Exception as err:  # the file changed since the series was opened
            raise ValueError(f"cannot read {path}: {err}; check the file and open the series again") from None

    def image_scale(self, i) -> tuple[float, ...]:
        """Pixel size per labels axis from the TIFF (resolution tags, ImageJ z spacing); 1 where unknown."""
        ndim = len(self.labels_shape(i))
        scale = [1.0] * ndim
        try:
            with tifffile.TiffFile(self.image_path(i)) as tif:
                size = _pixel_size(tif.pages[0])
                if size is not None:
                    scale[-2:] = size
                spacing = (tif.imagej_metadata or {}).get("spacing")
                if spacing and ndim >= 3 and float(spacing) > 0:
                    scale[-3] = float(spacing)
        except Exception:  # a pixel size we cannot read is not worth refusing the image for
            pass
        return tuple(scale)

    def read_labels(self, i) -> np.ndarray:
        """The saved labels of image ``i`` (zeros when none yet); remembers the file to detect outside edits."""
        image = self._image(i)
        path = image.labels_path
        self._conflicts.pop(image.name, None)  # reading the file again settles a conflict: this is what is shown
        signature = _signature(path)
        if signature is None:
            self._seen[image.name] = None
            return np.zeros(image.labels_shape, np.uint32)
        data, _ = read_labels_tiff(path)
        if data.ndim == len(image.labels_shape) + 1 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.shape != image.labels_shape:
            raise ValueError(f"{path} has shape {data.shape} but its image {image.path.name} needs "
                             f"{image.labels_shape}; fix or move the labels file")
        self._seen[image.name] = (signature, _digest(path))
        return data

    def labelled(self) -> list[str]:
        """Names of the images whose saved labels hold at least one object."""
        out = []
        for image in self._images:
            if image.labels_path.exists():
                try:
                    if np.any(tifffile.imread(image.labels_path)):
                        out.append(image.name)
                except Exception:  # damaged since opening: not labelled for training
                    continue
        return out

    # ------------------------------------------------------------------ saving
    def save_labels(self, i, labels, scale=None, translate=None) -> Saved:
        """Save the labels of image ``i`` atomically; see :class:`Saved` for labels changed outside.

        Raises PermissionError in a read-only series, ValueError for labels of
        the wrong shape or type, OSError (disk full ...) with the previous file intact.
        """
        image = self._image(i)
        if self.read_only:
            raise PermissionError(f"labels of {image.name} not saved: {self.read_only_reason}")
        arr = np.asarray(labels)
        if arr.dtype.kind not in "uib":
            raise ValueError(f"labels must be integers (0 = background), got dtype {arr.dtype}")
        if arr.shape != image.labels_shape:
            raise ValueError(f"labels of {image.name} have shape {arr.shape} but the image needs {image.labels_shape}")
        attributes = {"scale": scale if scale is not None else self.image_scale(i), "translate": translate,
                      "name": image.name}
        target, conflict = image.labels_path, self._conflicts.get(image.name)
        if conflict is None and self._changed_outside(image):
            conflict = target.with_name(f"{image.name}.conflict-{time.strftime('%Y%m%d-%H%M%S')}.tif")
            self._conflicts[image.name] = conflict
        destination = conflict or target
        self.labels_folder.mkdir(exist_ok=True)
        try:
            write_labels_tiff(str(destination), arr, attributes)
        except OSError as err:
            reason = "the disk is full" if err.errno == errno.ENOSPC else (err.strerror or str(err))
            raise OSError(err.errno, f"labels of {image.name} not saved to {destination}: {reason}. The file keeps its "
                                     "last saved version and your labels are still in napari: free space (or fix the "
                                     "folder) and they are saved at the next change") from err
        if conflict is not None:
            return Saved(conflict, True, f"labels/{target.name} was changed outside napari since it was opened: "
                                         f"it was kept, and your labels were saved as labels/{conflict.name}. "
                                         "Reopen the image to work on the changed file, or replace it with yours")
        self._seen[image.name] = (_signature(target), _digest(target))
        return Saved(target)

    def _changed_outside(self, image: SeriesImage) -> bool:
        """Is the labels file other than when this series last read or wrote it?"""
        now = _signature(image.labels_path)
        if image.name not in self._seen:
            return now is not None  # never read here: an existing file is someone's labels
        seen = self._seen[image.name]
        if seen is None or now is None:
            return seen != now
        if now == seen[0]:
            return False
        return _digest(image.labels_path) != seen[1]  # touched, or copied back unchanged: not a conflict

    def __repr__(self) -> str:
        mode = " read-only" if self.read_only else ""
        return f"ImageSeries({str(self.folder)!r}, {len(self)} images{mode})"

    def __del__(self) -> None:
        # A series dropped without close() (a script, a test) must not keep others read-only.
        try:
            self.lock.release()
        except Exception:
            pass
