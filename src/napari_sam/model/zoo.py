"""Getting the weights of a model by name, verified, and loading a model from a name or a file.

The names and their facts (:class:`ModelInfo`, :data:`MODELS`) live in
:mod:`.registry` and are importable from here as well.
:func:`fetch_checkpoint` puts a verified copy into the cache folder
(downloading it once), and :func:`load_model` turns a name or a local file
into a ready-to-use SAM model.

Downloads go through pooch, which writes into a temporary file in the cache
folder and moves it to its final name only after the checksum matched. A
file under its final name therefore always passed the check once; we check
it again every time it is used, so a file damaged later on disk is fetched
again instead of being loaded.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
import re
import time
from pathlib import Path

import platformdirs
import pooch

from . import build
from .checkpoint import CheckpointError, file_sha256, read_state_dict
from .device import pick_device
from .registry import HASH_DIGITS, MODELS, ModelInfo, get_model_info, list_models, register_model

__all__ = [
    "CACHE_ENV_VAR",
    "HASH_DIGITS",
    "MODELS",
    "DownloadError",
    "ModelInfo",
    "cache_dir",
    "cached_checkpoint_path",
    "checkpoint_dir",
    "fetch_checkpoint",
    "get_model_info",
    "is_cached",
    "list_models",
    "load_model",
    "register_model",
]

logger = logging.getLogger(__name__)

#: Environment variable that moves the cache folder (e.g. to a large disk).
CACHE_ENV_VAR = "NAPARI_SAM_CACHE_DIR"
_APP_NAME = "napari-sam-annotator"

# Seconds to wait for the server to answer or send the next piece; a stalled
# download then fails with a clear message instead of hanging napari.
_DOWNLOAD_TIMEOUT_S = 60

# pooch downloads into tempfile.NamedTemporaryFile(dir=<cache folder>), named
# like "tmpab12_x9z"; such a file older than this is an abandoned download.
_POOCH_TEMP_NAME = re.compile(r"tmp[a-z0-9_]{8}")
_STALE_AFTER_S = 24 * 3600


class DownloadError(RuntimeError):
    """A checkpoint could not be downloaded; says what to put where by hand.

    Attributes ``url``, ``target`` (the file that was to be written) and
    ``reason`` let a user interface show the parts separately.
    """

    def __init__(self, message: str, *, url: str, target: Path, reason: str):
        super().__init__(message)
        self.url = url
        self.target = target
        self.reason = reason


def cache_dir() -> Path:
    """Root of the plugin's cache (``$NAPARI_SAM_CACHE_DIR`` or the system cache folder)."""
    configured = os.environ.get(CACHE_ENV_VAR, "").strip()
    if configured:
        return Path(configured).expanduser()
    return Path(platformdirs.user_cache_dir(_APP_NAME, appauthor=False))


def checkpoint_dir(cache: str | os.PathLike | None = None) -> Path:
    """Folder holding downloaded checkpoints: ``<cache>/checkpoints``."""
    root = cache_dir() if cache is None else Path(cache).expanduser()
    return root / "checkpoints"


def cached_checkpoint_path(name_or_info: str | ModelInfo, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the file of a downloadable model lives (or will live) in the cache."""
    info = _as_info(name_or_info)
    if info.package_file is not None:
        return _package_path(info)
    return checkpoint_dir(cache_dir) / info.filename


def is_cached(name_or_info: str | ModelInfo, cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether the file is present (cheap: the checksum is checked when it is used)."""
    return cached_checkpoint_path(name_or_info, cache_dir).is_file()


def fetch_checkpoint(
    name_or_info: str | ModelInfo,
    cache_dir: str | os.PathLike | None = None,
    progressbar=True,
) -> Path:
    """Path to a verified copy of a zoo model's weights, downloading it if needed.

    ``progressbar`` is True (a tqdm bar on the terminal), False, or an object
    with tqdm's ``total``/``update``/``reset``/``close`` (e.g. one that drives
    a progress bar in the user interface).

    Raises :class:`DownloadError` when the file cannot be downloaded or the
    download does not match the checksum; nothing is then left under the
    final file name.
    """
    info = _as_info(name_or_info)
    if info.package_file is not None:
        return _fetch_package_file(info)

    target = checkpoint_dir(cache_dir) / info.filename
    if target.is_file():
        if _hash_matches(target, info):
            return target
        # Delete before downloading again: if the new download fails, the
        # damaged copy must not stay behind under the name we trust.
        logger.warning(
            "%s in the cache does not match its checksum (damaged or replaced); downloading it again.",
            target,
        )
        target.unlink()

    downloader = None
    if info.url.startswith(("http://", "https://")):
        downloader = pooch.HTTPDownloader(progressbar=progressbar, timeout=_DOWNLOAD_TIMEOUT_S)
    logger.info("Downloading %s (%s) from %s to %s", info.name, info.size_text, info.url, target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partial_downloads(target.parent)
        pooch.retrieve(
            info.url,
            known_hash=info.hash,
            fname=info.filename,
            path=target.parent,
            downloader=downloader,
            progressbar=progressbar,
        )
    except Exception as err:  # requests, pooch and OS errors all mean "no file"
        reason = _plain_reason(err)
        _remove_if_unverified(target, info)
        raise DownloadError(
            f"{info.name} ({info.size_text}) could not be downloaded from {info.url}: {reason}. "
            f"Put the file {info.filename} into {target.parent}, or choose a local "
            "checkpoint file instead.",
            url=info.url,
            target=target,
            reason=reason,
        ) from err
    return target


def load_model(name_or_path: str | os.PathLike | ModelInfo, device=None):
    """A SAM model ready for inference, from a zoo name or a local checkpoint file.

    A zoo name is fetched and verified first; for a local file the
    architecture is read off the weights. The model is in eval mode on
    ``pick_device(device)`` and carries ``model_name``, ``checkpoint_path``
    and ``checkpoint_sha256`` so results can be traced to the exact weights.

    Never substitutes another model: an unknown name raises ValueError listing
    the known ones, unusable weights raise :class:`CheckpointError`.
    """
    target_device = pick_device(device)  # a bad device name fails before any download
    info, path = _resolve(name_or_path)
    if info is not None:
        path = fetch_checkpoint(info)
        model_name = info.name
        sha256 = info.hash_hex if info.hash_algorithm == "sha256" else file_sha256(path)
    else:
        model_name = path.stem
        sha256 = None  # computed after reading succeeded: no point hashing a bad file

    state = read_state_dict(path)
    try:
        config = build.config_from_state_dict(state, source=path)
    except ValueError as err:
        raise CheckpointError(str(err)) from err
    if info is not None and info.model_type != config.model_type:
        raise CheckpointError(
            f"Checkpoint file {path} holds a {config.model_type} model, but '{info.name}' "
            f"should be {info.model_type}."
        )
    model = build.build_sam(config)
    build.load_weights(model, state, source=path)  # strict; mismatches become CheckpointError
    del state

    if sha256 is None:
        sha256 = file_sha256(path)
    model.eval()
    model.to(target_device)
    model.model_name = model_name
    model.checkpoint_path = Path(path)
    model.checkpoint_sha256 = sha256
    return model


def _resolve(name_or_path) -> tuple[ModelInfo | None, Path | None]:
    """(registry entry, None) for a zoo model, (None, file) for a local file."""
    if isinstance(name_or_path, ModelInfo):
        return name_or_path, None
    if isinstance(name_or_path, str) and name_or_path in MODELS:
        return MODELS[name_or_path], None
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(
            f"expected a model name or a checkpoint file path, got {type(name_or_path).__name__}"
        )
    path = Path(name_or_path).expanduser()
    if path.exists():
        return None, path
    raise ValueError(
        f"'{name_or_path}' is neither a known model ({', '.join(MODELS)}) nor an existing "
        "checkpoint file."
    )


def _as_info(name_or_info: str | ModelInfo) -> ModelInfo:
    if isinstance(name_or_info, ModelInfo):
        return name_or_info
    return get_model_info(name_or_info)


def _hash_matches(path: Path, info: ModelInfo) -> bool:
    algorithm = info.hash_algorithm
    if algorithm == "sha256":
        actual = file_sha256(path)
    else:
        try:
            actual = pooch.file_hash(str(path), alg=algorithm)
        except ValueError as err:
            # e.g. xxh128 without the xxhash package installed
            raise RuntimeError(
                f"Checking {info.name} needs the '{algorithm}' checksum, which is not available: {err}"
            ) from err
    return actual.lower() == info.hash_hex


def _remove_if_unverified(target: Path, info: ModelInfo) -> None:
    """Make sure a failed fetch leaves no unverified file under the final name.

    pooch already only moves verified files into place; this is a second line
    of defence in case a future pooch version behaves differently.
    """
    try:
        if target.is_file() and not _hash_matches(target, info):
            target.unlink()
    except OSError:
        logger.warning("Could not remove the unverified file %s", target)


def _remove_stale_partial_downloads(folder: Path) -> None:
    """Delete temporary files left by downloads that were killed half-way.

    pooch removes its temporary file when a download fails, but not when
    napari is closed or crashes mid-download; a partial vit_h is 2.5 GB.
    Only files older than a day are touched, so a download running in
    another napari window right now keeps its file.
    """
    now = time.time()
    for candidate in folder.iterdir():
        if not _POOCH_TEMP_NAME.fullmatch(candidate.name) or not candidate.is_file():
            continue
        try:
            if now - candidate.stat().st_mtime > _STALE_AFTER_S:
                candidate.unlink()
                logger.info("Removed an abandoned partial download: %s", candidate)
        except OSError:
            pass  # another process may have just moved or removed it


def _plain_reason(err: BaseException) -> str:
    """Why a download failed, in words a microscopist can act on."""
    import requests  # pooch's own dependency; imported lazily like pooch does

    if isinstance(err, requests.exceptions.HTTPError) and err.response is not None:
        status = err.response.status_code
        text = err.response.reason or ""
        hint = " (the file is not on the server at this address)" if status == 404 else ""
        return f"the server answered {status} {text}{hint}".rstrip()
    if isinstance(err, requests.exceptions.Timeout):
        return "the server did not answer in time"
    if isinstance(err, requests.exceptions.ChunkedEncodingError):
        return "the connection broke off before the whole file had arrived"
    if isinstance(err, requests.exceptions.ConnectionError):
        return "no connection to the server (offline, or blocked by a firewall or proxy?)"
    if isinstance(err, requests.exceptions.RequestException):
        return f"the download failed ({err})"
    if isinstance(err, ValueError) and "hash" in str(err).lower():
        return (
            "the downloaded file is not the expected one (its checksum does not match; it was "
            "damaged on the way or changed on the server), so it was deleted"
        )
    if isinstance(err, OSError):
        return f"the file could not be written ({err.strerror or err})"
    return f"{type(err).__name__}: {err}"


def _package_root() -> Path:
    return Path(str(importlib.resources.files("napari_sam")))


def _package_path(info: ModelInfo) -> Path:
    return _package_root() / info.package_file


def _fetch_package_file(info: ModelInfo) -> Path:
    path = _package_path(info)
    if not path.is_file():
        raise CheckpointError(
            f"The model file {path} that comes with napari-sam-annotator is missing; "
            "reinstall the plugin."
        )
    if not _hash_matches(path, info):
        raise CheckpointError(
            f"The model file {path} that comes with napari-sam-annotator is damaged "
            "(its checksum does not match); reinstall the plugin."
        )
    return path
