"""Slice embeddings kept on disk, so a stack is embedded once and reloaded in a moment.

One file per slice (its layout: :mod:`.entry_format`). Its name is derived
from the slice's identity, and the file's header repeats that identity in
full:

* the fingerprint of the slice's pixels (:func:`napari_sam.fingerprint.array_fingerprint`),
* the model's weights id (name and checkpoint SHA-256),
* the preprocessing rule string (it holds the intensity range used),
* the precision the image encoder computed in (fp32 or bf16),
* :data:`~.entry_format.FORMAT_VERSION` of the file layout,

plus the original and resized image sizes needed to decode prompts. A file
is used only when every one of these matches what the caller asks for (the
original size too, when the caller gives the slice's shape) and its checksum,
over header and payload, is right: a stale entry (slice edited, other model,
other contrast rule), a foreign file or one cut short by a crash or a full
disk reads as *missing*, never as an embedding.

Files are written to a temporary name, flushed to disk (fsync) and only then
renamed to their final name (``os.replace`` is atomic), so a final name
always holds a complete file.

Each use touches the file's modification time, which makes it the "last
used" time for least-recently-used eviction when the folder grows past its
size limit.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_atomically
from ..model.embedding import ImageEmbedding
from . import claims, entry_format

logger = logging.getLogger(__name__)

SUFFIX = ".samemb"
_TEMP_PREFIX = ".writing-"
#: Default size limit of a store (bytes): about 2500 slices of SAM (vit_b/vit_t, 2 MiB each).
DEFAULT_MAX_BYTES = 5 * 1024**3
# A temporary file this old is left over from a crash, not being written right now.
_STALE_TEMP_S = 3600


class CacheWriteError(OSError):
    """An embedding could not be saved (folder not writable, disk full ...); the message says which folder."""


@dataclass(frozen=True)
class SliceKey:
    """Everything an embedding's validity depends on."""

    fingerprint: str  # of the slice's pixels
    model_id: str  # Sam.weights_id
    preprocessing: str  # the rule string of napari_sam.model.image
    precision: str = "fp32"  # what the image encoder computed in (ImageEmbedding.precision)

    def __post_init__(self):
        for name in ("fingerprint", "model_id", "preprocessing", "precision"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")

    def file_stem(self) -> str:
        text = (
            f"{entry_format.FORMAT_VERSION}\n{self.model_id}\n{self.preprocessing}\n{self.fingerprint}"
            f"\n{self.precision}"
        )
        return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def default_folder() -> Path:
    """``<napari-sam cache>/embeddings`` (``$NAPARI_SAM_CACHE_DIR`` moves the cache)."""
    from ..model.zoo import cache_dir

    return cache_dir() / "embeddings"


def is_persistent_model_id(model_id: str) -> bool:
    """False for models without a checkpoint hash: their id is only unique inside one process."""
    return ":sha256:" in model_id


class EmbeddingStore:
    """A folder of slice embeddings with a size limit.

    ``folder=None`` uses the per-user cache (:func:`default_folder`). The
    folder is created on the first write. Only files this class writes
    (``*.samemb``, their temporary files and ``*.claim``) are ever deleted,
    so a folder the user chose may hold other files.
    """

    def __init__(self, folder: str | os.PathLike | None = None, max_bytes: int | None = DEFAULT_MAX_BYTES):
        if folder is not None and not isinstance(folder, (str, os.PathLike)):
            raise TypeError(f"folder must be a path, got {type(folder).__name__}")
        self.folder = Path(folder).expanduser() if folder is not None else default_folder()
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"the embedding cache {self.folder} exists but is not a folder")
        if max_bytes is not None:
            if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes <= 0:
                raise ValueError(f"max_bytes must be a positive whole number of bytes or None, got {max_bytes!r}")
            max_bytes = int(max_bytes)
        self.max_bytes = max_bytes
        self._cleaned_temps = False

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.folder)!r}, max_bytes={self.max_bytes})"

    # ------------------------------------------------------------------ paths
    def path_for(self, key: SliceKey) -> Path:
        return self.folder / (key.file_stem() + SUFFIX)

    def _entries(self) -> list[os.DirEntry]:
        try:
            with os.scandir(self.folder) as it:
                return [e for e in it if e.name.endswith(SUFFIX) and e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return []

    # ------------------------------------------------------------------ reading
    def contains(self, key: SliceKey, original_size: tuple[int, int] | None = None) -> bool:
        """True when an entry for ``key`` (for a slice of ``original_size``, if given) exists with the full size.

        A quick check (the header only); :meth:`get` also verifies the checksum.
        """
        if not isinstance(key, SliceKey):
            raise TypeError(f"expected a SliceKey, got {type(key).__name__}")
        path = self.path_for(key)
        try:
            with open(path, "rb") as f:
                head = f.read(entry_format.HEAD_READ)
                size = os.fstat(f.fileno()).st_size
        except OSError:
            return False
        try:
            header, start = entry_format.parse_header(head)
        except ValueError:
            return False
        return entry_format.header_matches(header, key, original_size) and size == entry_format.entry_size(header, start)

    def get(self, key: SliceKey, *, original_size: tuple[int, int] | None = None, touch: bool = True) -> ImageEmbedding | None:
        """The stored embedding for ``key``, or None when there is no valid one.

        ``original_size``, the (rows, columns) of the slice the caller holds,
        must then match the entry's. Features come back as a float16 tensor on
        the CPU (``SamPredictor.set_embedding`` converts them). A damaged entry
        is deleted so it is recomputed; an entry whose header names another
        identity or size (a hash collision or a foreign file) is left alone and
        reported as missing.
        """
        if not isinstance(key, SliceKey):
            raise TypeError(f"expected a SliceKey, got {type(key).__name__}")
        path = self.path_for(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            logger.warning("cannot read cached embedding %s (%s); it will be recomputed", path, err)
            return None
        try:
            header, payload = entry_format.parse(data)
        except ValueError as err:
            logger.warning("cached embedding %s is damaged (%s); it will be recomputed", path, err)
            _remove_quietly(path)
            return None
        if not entry_format.header_matches(header, key, original_size):
            logger.info("cached embedding %s belongs to another slice/model/rule/size; not used", path)
            return None
        if touch:
            self._touch(path)
        return ImageEmbedding(
            features=entry_format.features_of(header, payload),
            original_size=tuple(header["original_size"]),
            input_size=tuple(header["input_size"]),
            model_id=header["model_id"],
            preprocessing=header["preprocessing"],
            precision=header["precision"],
        )

    def _touch(self, path: Path) -> None:
        # The modification time records the last use (access times are often not kept by the OS).
        try:
            os.utime(path)
        except OSError:
            pass  # a read-only cache still serves its entries

    # ------------------------------------------------------------------ claims
    def claim(self, key: SliceKey) -> claims.Claim | None:
        """Claim the computing of ``key``'s slice (:mod:`.claims`); None while another live process has it.

        Where the folder cannot be created or written, everyone may compute: the
        claim returned then holds nothing.
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return claims.Claim(None)
        return claims.try_claim(self.path_for(key).with_suffix(claims.CLAIM_SUFFIX))

    # ------------------------------------------------------------------ writing
    def put(self, key: SliceKey, embedding: ImageEmbedding) -> Path:
        """Save ``embedding`` under ``key`` atomically; evict old entries past the size limit.

        Raises :class:`CacheWriteError` (nothing half-written is left) when the folder
        cannot be created or written, or the disk is full.
        """
        if not isinstance(key, SliceKey):
            raise TypeError(f"expected a SliceKey, got {type(key).__name__}")
        if not isinstance(embedding, ImageEmbedding):
            raise TypeError(f"expected an ImageEmbedding, got {type(embedding).__name__}")
        made = (embedding.model_id, embedding.preprocessing, embedding.precision)
        named = (key.model_id, key.preprocessing, key.precision)
        if made != named:
            raise ValueError(
                "the embedding was made by model {!r} with rule {!r} in precision {!r}, but the key names model "
                "{!r} with rule {!r} in precision {!r}".format(*made, *named)
            )
        embedding.check_finite("the embedding to be cached")
        if not is_persistent_model_id(key.model_id):
            raise ValueError(
                f"model {key.model_id!r} has no checkpoint hash (random or in-memory weights); its embeddings "
                "cannot be recognised later, so they are not saved. Load the model with load_model(name or file)."
            )
        blob = entry_format.serialise(key, embedding)
        self._make_folder()
        path = self.path_for(key)
        self._write_atomically(path, blob)
        self._enforce_limit(keep=path)
        return path

    def _make_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheWriteError(
                err.errno, f"cannot create the embedding cache folder {self.folder}: {err.strerror or err}; "
                "choose another cache folder"
            ) from err
        if not self._cleaned_temps:
            self._cleaned_temps = True
            self._remove_stale_temps()

    def _write_atomically(self, path: Path, blob: bytes) -> None:
        try:
            write_atomically(path, lambda f: f.write(blob), temp_prefix=_TEMP_PREFIX)
        except OSError as err:
            if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                why = "the disk is full; free some space, clear the cache or choose another cache folder"
            elif err.errno == errno.EROFS:
                why = "the folder is on a read-only file system; choose another cache folder"
            elif err.errno in (errno.EACCES, errno.EPERM):
                why = "no permission to write in the folder; choose another cache folder"
            else:
                why = f"{err.strerror or err}; choose another cache folder"
            raise CacheWriteError(err.errno, f"cannot save an embedding in {self.folder}: {why}") from err

    def _remove_stale_temps(self) -> None:
        now = time.time()
        try:
            with os.scandir(self.folder) as it:
                for e in it:
                    if e.name.startswith(_TEMP_PREFIX) and e.name.endswith(".tmp"):
                        try:
                            if now - e.stat().st_mtime > _STALE_TEMP_S:
                                _remove_quietly(Path(e.path))
                        except OSError:
                            pass
        except OSError:
            pass

    # ------------------------------------------------------------------ size
    def usage_bytes(self) -> int:
        """Bytes used by the entries in the folder."""
        total = 0
        for e in self._entries():
            try:
                total += e.stat().st_size
            except OSError:
                pass
        return total

    def __len__(self) -> int:
        return len(self._entries())

    def _enforce_limit(self, keep: Path | None = None) -> list[Path]:
        if self.max_bytes is None:
            return []
        return self.evict(self.max_bytes, keep=keep)

    def evict(self, max_bytes: int, keep: Path | None = None) -> list[Path]:
        """Delete least recently used entries until at most ``max_bytes`` remain; return what was deleted.

        ``keep`` (the entry just written) is never deleted, even when it alone is
        larger than the limit.
        """
        entries = []
        for e in self._entries():
            try:
                st = e.stat()
            except OSError:
                continue
            entries.append((st.st_mtime_ns, e.name, st.st_size, Path(e.path)))
        total = sum(size for _, _, size, _ in entries)
        removed = []
        for _, _, size, path in sorted(entries):
            if total <= max_bytes:
                break
            if keep is not None and path == keep:
                continue
            if _remove_quietly(path):
                total -= size
                removed.append(path)
        if removed:
            logger.info("embedding cache %s over its limit: removed %d old entries", self.folder, len(removed))
        return removed

    def clear(self) -> int:
        """Delete every entry (and leftover temporary file or abandoned claim); return the bytes freed."""
        freed = 0
        try:
            with os.scandir(self.folder) as it:
                names = [
                    e for e in it
                    if e.name.endswith(SUFFIX) or (e.name.startswith(_TEMP_PREFIX) and e.name.endswith(".tmp"))
                    or (e.name.endswith(claims.CLAIM_SUFFIX) and claims.is_stale(Path(e.path)))
                ]
        except FileNotFoundError:
            return 0
        for e in names:
            try:
                size = e.stat().st_size
            except OSError:
                size = 0
            if _remove_quietly(Path(e.path)):
                freed += size
        return freed


def _remove_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as err:
        logger.warning("cannot delete %s: %s", path, err)
        return False
