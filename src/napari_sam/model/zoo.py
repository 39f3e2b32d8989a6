"""The models napari-sam-annotator knows by name, and getting their weights.

Each model has a :class:`ModelInfo` entry in :data:`MODELS`: where the file
comes from, how big it is, its checksum and a line describing it for the
model chooser. :func:`fetch_checkpoint` puts a verified copy into the cache
folder (downloading it once), and :func:`load_model` turns a name or a local
file into a ready-to-use SAM model.

Downloads go through pooch, which writes into a temporary file in the cache
folder and moves it to its final name only after the checksum matched. A
file under its final name therefore always passed the check once; we check
it again every time it is used, so a file damaged later on disk is fetched
again instead of being loaded.
"""

from __future__ import annotations

import dataclasses
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

logger = logging.getLogger(__name__)

#: Environment variable that moves the cache folder (e.g. to a large disk).
CACHE_ENV_VAR = "NAPARI_SAM_CACHE_DIR"
_APP_NAME = "napari-sam-annotator"

# Seconds to wait for the server to answer or send the next piece; a stalled
# download then fails with a clear message instead of hanging napari.
_DOWNLOAD_TIMEOUT_S = 60

# pooch downloads into tempfile.NamedTemporaryFile(dir=<cache folder>), named
# like "tmpab12_x9z"; such a file older than this is an abandoned download.
#: Hash algorithms a zoo entry may name, with the length of their hex digest.
HASH_DIGITS = {"sha256": 64, "xxh128": 32}

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


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """One entry of the model zoo.

    Exactly one of ``url`` (downloaded into the cache) and ``package_file``
    (a path inside the installed ``napari_sam`` package, for small models
    shipped with the plugin) is set. ``hash`` is ``"sha256:<64 hex digits>"``
    (or ``"xxh128:<32 hex digits>"``, which needs the xxhash package). ``size``
    is in bytes, or None where it is not published.
    """

    name: str
    model_type: str
    hash: str
    filename: str
    description: str
    licence: str
    url: str | None = None
    size: int | None = None
    package_file: str | None = None

    def __post_init__(self) -> None:
        for field in ("name", "model_type", "filename", "description", "licence"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"ModelInfo.{field} must be a non-empty string, got {value!r}")
        if (self.url is None) == (self.package_file is None):
            raise ValueError(
                f"model '{self.name}': give exactly one of url (downloaded) and "
                "package_file (shipped with the plugin)"
            )
        if self.url is not None and not re.match(r"^(https?|ftp)://", self.url):
            raise ValueError(f"model '{self.name}': url must start with http(s):// or ftp://, got {self.url!r}")
        if self.filename in (".", "..") or re.search(r"[/\\\x00]", self.filename):
            # ".." is its own Path.name, and would put the file above the checkpoint folder.
            raise ValueError(f"model '{self.name}': filename must be a bare file name, got {self.filename!r}")
        if self.size is not None and (not isinstance(self.size, int) or self.size <= 0):
            raise ValueError(f"model '{self.name}': size must be a positive number of bytes or None")
        match = re.fullmatch(r"([a-z0-9_]+):([0-9a-fA-F]+)", self.hash or "")
        if match is None:
            raise ValueError(
                f"model '{self.name}': hash must look like 'sha256:<hex digits>', got {self.hash!r}"
            )
        algorithm, digits = match.groups()
        if algorithm not in HASH_DIGITS:
            # md5 and sha1 no longer protect against a file made to match.
            raise ValueError(
                f"model '{self.name}': unknown hash algorithm '{algorithm}' (accepted: sha256, or xxh128 with "
                "the xxhash package); give 'sha256:<64 hex digits>'"
            )
        if len(digits) != HASH_DIGITS[algorithm]:
            raise ValueError(
                f"model '{self.name}': a {algorithm} hash has {HASH_DIGITS[algorithm]} hex digits, "
                f"got {len(digits)}"
            )

    @property
    def hash_algorithm(self) -> str:
        return self.hash.split(":", 1)[0]

    @property
    def hash_hex(self) -> str:
        return self.hash.split(":", 1)[1].lower()

    @property
    def size_text(self) -> str:
        """Download size for people, e.g. '375 MB' or '2.6 GB'."""
        if self.size is None:
            return "size unknown"
        if self.size >= 1_000_000_000:
            return f"{self.size / 1e9:.1f} GB"
        if self.size >= 1_000_000:
            return f"{self.size / 1e6:.0f} MB"
        return f"{max(self.size / 1e3, 1):.0f} kB"


_SAM_LICENCE = "Apache-2.0"
_SAM_DATA = "trained by Meta on 11 million everyday photos (SA-1B)"

MODELS: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo, *, replace: bool = False) -> ModelInfo:
    """Add ``info`` to :data:`MODELS` (e.g. a demo model shipped with the plugin)."""
    if not isinstance(info, ModelInfo):
        raise TypeError(f"register_model expects a ModelInfo, got {type(info).__name__}")
    if info.name in MODELS and not replace:
        raise ValueError(f"a model named '{info.name}' is already registered")
    MODELS[info.name] = info
    return info


for _info in (
    ModelInfo(
        name="vit_b",
        model_type="vit_b",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
        size=375_042_383,
        hash="sha256:ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        filename="sam_vit_b_01ec64.pth",
        description=(
            f"Segment Anything, base size; {_SAM_DATA}. Good general choice: "
            "a few seconds to 15 s per image on a CPU, well under 1 s on a GPU."
        ),
        licence=_SAM_LICENCE,
    ),
    ModelInfo(
        name="vit_l",
        model_type="vit_l",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
        size=1_249_524_607,
        hash="sha256:3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        filename="sam_vit_l_0b3195.pth",
        description=(
            f"Segment Anything, large size; {_SAM_DATA}. Somewhat more precise than "
            "vit_b but about 3 times slower; a GPU is recommended."
        ),
        licence=_SAM_LICENCE,
    ),
    ModelInfo(
        name="vit_h",
        model_type="vit_h",
        url="https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
        size=2_564_550_879,
        hash="sha256:a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        filename="sam_vit_h_4b8939.pth",
        description=(
            f"Segment Anything, huge size; {_SAM_DATA}. The most precise original SAM, "
            "about 6 times slower than vit_b; needs a GPU to be pleasant."
        ),
        licence=_SAM_LICENCE,
    ),
    ModelInfo(
        name="vit_t",
        model_type="vit_t",
        url="https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
        size=40_728_226,
        hash="sha256:6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        filename="mobile_sam.pt",
        description=(
            "MobileSAM: a small, fast copy of SAM learned from the same everyday photos. "
            "About 1 s per image on a CPU; outlines slightly less precise."
        ),
        licence=_SAM_LICENCE,
    ),
    ModelInfo(
        name="vit_b_lm",
        model_type="vit_b",
        url="https://zenodo.org/record/8250281/files/vit_b_lm.pth?download=1",
        size=None,
        hash="sha256:5a59cc4064092d54cd4d92cd967e39168f3760905431e868e474d60fe5464ecd",
        filename="vit_b_lm.pth",
        description=(
            "vit_b fine-tuned by the micro-sam project on light microscopy (cells and nuclei, "
            "fluorescence and label-free). First release (Zenodo record 8250281), not the "
            "newer BioImage.IO version. Speed as vit_b."
        ),
        licence="not verified here; see https://zenodo.org/record/8250281",
    ),
    ModelInfo(
        name="vit_b_em_organelles",
        model_type="vit_b",
        url="https://zenodo.org/record/8250260/files/vit_b_em.pth?download=1",
        size=None,
        hash="sha256:c04a714a4e14a110f0eec055a65f7409d54e6bf733164d2933a0ce556f7d6f81",
        filename="vit_b_em.pth",
        description=(
            "vit_b fine-tuned by the micro-sam project on electron microscopy (organelles such "
            "as mitochondria and nuclei). First release 'vit_b_em' (Zenodo record 8250260), "
            "not the newer BioImage.IO version. Speed as vit_b."
        ),
        licence="not verified here; see https://zenodo.org/record/8250260",
    ),
    ModelInfo(
        name="demo",
        model_type="custom",
        package_file="models/demo_nuclei.pt",
        size=3_963_563,
        hash="sha256:4728a235a75bb80116f1698acf41342a5e8c31754b7fa124025fd2fa94f24357",
        filename="demo_nuclei.pt",
        description=(
            "Demo model trained on generated nuclei only — for trying the plugin offline; "
            "use vit_t / vit_b / vit_b_lm for real data. Ships with the plugin (no download)."
        ),
        licence="BSD-3-Clause",
    ),
):
    register_model(_info)
del _info


def list_models() -> list[ModelInfo]:
    """All known models in a sensible order for a chooser (as registered)."""
    return list(MODELS.values())


def get_model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; ValueError listing the known names if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"Unknown model '{name}'. Known models: {', '.join(MODELS)}."
        ) from None


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
