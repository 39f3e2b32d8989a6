"""Reading SAM weight files safely.

A checkpoint is a file written with ``torch.save``. Such files are Python
pickles, and a pickle can be made to run arbitrary code when it is opened.
Microscopists download fine-tuned models from many places, so this module
only ever opens files with ``weights_only=True``: tensors, numbers, strings
and plain containers are read, anything else is refused before it can run.

Several layouts are in circulation and all are accepted:

- a flat state_dict, as published by Meta and MobileSAM;
- a training checkpoint ``{"model_state": {"sam.<key>": ...}, ...}`` as
  written by the micro-sam training code;
- ``{"model": ...}`` or ``{"state_dict": ...}`` wrappers, and keys with a
  ``module.`` prefix left by ``torch.nn.DataParallel``.

Whatever the layout, the result is a flat ``dict[str, Tensor]`` whose keys
start with ``image_encoder.``, ``prompt_encoder.`` or ``mask_decoder.``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

#: The three parts of a SAM model; every key of a usable state_dict starts
#: with one of these.
SAM_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")

# Keys under which training code tucks the weights away, tried in this order.
_WRAPPER_KEYS = ("model_state", "state_dict", "model")

# Prefixes that training wrappers add in front of the SAM keys:
# "module." from DataParallel/DistributedDataParallel, "sam." from micro-sam.
_FOREIGN_PREFIXES = ("module.", "sam.")

# How deep wrappers may be nested ({"model": {"state_dict": ...}}) before we
# stop looking; real files use at most two levels.
_MAX_WRAPPER_DEPTH = 3

_HASH_CHUNK = 4 * 1024 * 1024


class CheckpointError(ValueError):
    """A file cannot be used as SAM weights. The message names the file."""


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file as lowercase hex, read in chunks.

    Checkpoints reach 2.5 GB; reading them in one go would double the memory
    needed just to check them.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read the SAM weights from ``path`` onto the CPU.

    Returns a flat dict of tensors whose keys start with ``image_encoder.``,
    ``prompt_encoder.`` or ``mask_decoder.``. Entries that are not tensors
    (step counters, configuration) and entries outside the three SAM parts
    (for example an extra decoder head saved next to SAM) are dropped.

    Raises :class:`CheckpointError` naming the file when it is missing, not a
    torch file, damaged, would need to run code to be opened, does not
    hold a complete SAM model or holds NaN or infinite weights.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint path must be a str or Path, got {type(path).__name__}")
    path = Path(path).expanduser()
    _check_is_readable_file(path)
    content = _torch_load_weights_only(path)
    weights = _find_sam_weights(content, path)
    _check_finite(weights, path)
    return weights


def _check_finite(weights: dict[str, torch.Tensor], path: Path) -> None:
    """A NaN or infinite weight makes every embedding NaN, and every mask empty, without an error."""
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise CheckpointError(
            f"Checkpoint file {path} holds NaN or infinite weights (in {bad[0]}{more}); such a model gives "
            "empty masks. The training that wrote it probably diverged: use an earlier checkpoint."
        )


def _check_is_readable_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointError(f"Checkpoint file {path} does not exist.")
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder, but a checkpoint file (.pth or .pt) was expected."
        )
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"Checkpoint file {path} is empty (0 bytes). It was probably not copied or "
            "downloaded completely; get the file again."
        )


def _torch_load_weights_only(path: Path):
    """``torch.load`` that can only ever produce data, never run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        message = str(err)
        # weights_only refuses any Python object other than tensors and plain
        # containers. Name the object the file asked for: that tells the user
        # whether it is malicious or merely saved with extra objects.
        wanted = re.search(r"GLOBAL\s+([\w.]+)", message)
        if wanted:
            raise CheckpointError(
                f"Checkpoint file {path} contains Python objects other than weights "
                f"(it asks for '{wanted.group(1)}'). Such files can run code when opened, "
                "so they are refused. If you trust its origin, re-save only the weights "
                "with torch.save(model.state_dict(), ...)."
            ) from err
        if "truncated" in message:
            raise CheckpointError(_damaged_message(path)) from err
        raise CheckpointError(_not_a_checkpoint_message(path)) from err
    except (EOFError, struct.error) as err:
        # The old (pre-zip) torch format runs out of bytes mid-record.
        raise CheckpointError(_damaged_message(path)) from err
    except RuntimeError as err:
        # torch reports a cut-off zip archive (the index sits at the very end
        # of the file) as a RuntimeError from its archive reader.
        message = str(err).lower()
        if "central directory" in message or "failed reading zip" in message:
            raise CheckpointError(_damaged_message(path)) from err
        raise CheckpointError(_not_a_checkpoint_message(path)) from err
    except OSError as err:
        raise CheckpointError(
            f"Checkpoint file {path} could not be read: {err.strerror or err}"
        ) from err
    except Exception as err:
        # A file that is not a torch file at all (text, an image, a TIFF)
        # fails somewhere inside the unpickler with KeyError, ValueError, ...
        # The weights-only unpickler cannot have run anything, so whatever
        # went wrong, the file is simply unusable.
        raise CheckpointError(_not_a_checkpoint_message(path)) from err


def _not_a_checkpoint_message(path: Path) -> str:
    return (
        f"{path} is not a PyTorch checkpoint file (.pth/.pt) that holds weights. "
        "Choose the weights file of a SAM model."
    )


def _damaged_message(path: Path) -> str:
    return (
        f"Checkpoint file {path} is damaged or incomplete (ends too early). "
        "It was probably not downloaded or copied completely; get the file again."
    )


def _find_sam_weights(content, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(content, Mapping):
        raise CheckpointError(
            f"Checkpoint file {path} holds a {type(content).__name__}, "
            "but a dictionary of SAM weights was expected."
        )
    candidate: Mapping = content
    for _ in range(_MAX_WRAPPER_DEPTH):
        if _count_sam_keys(candidate) > 0:
            break
        inner = next(
            (candidate[k] for k in _WRAPPER_KEYS if isinstance(candidate.get(k), Mapping)),
            None,
        )
        if inner is None:
            break
        candidate = inner

    _refuse_quantised(candidate, path)
    weights: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in candidate.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            continue
        clean = _strip_foreign_prefixes(key)
        if not clean.startswith(SAM_PARTS):
            dropped.append(key)
            continue
        if clean in weights:
            raise CheckpointError(
                f"Checkpoint file {path} holds the weight '{clean}' twice "
                "(with and without a 'module.'/'sam.' prefix); it is ambiguous which to use."
            )
        weights[clean] = value

    if not weights:
        sample = ", ".join(repr(k) for k in list(candidate)[:5])
        raise CheckpointError(
            f"Checkpoint file {path} does not contain SAM weights: expected names starting "
            f"with {', '.join(SAM_PARTS)} but found {sample or 'no entries'}."
        )
    missing = [part.rstrip(".") for part in SAM_PARTS if not any(k.startswith(part) for k in weights)]
    if missing:
        raise CheckpointError(
            f"Checkpoint file {path} is not a complete SAM model: it has no weights for "
            f"{', '.join(missing)}."
        )
    if dropped:
        logger.debug("%s: ignored %d entries outside SAM: %s", path, len(dropped), dropped[:10])
    return weights


def _refuse_quantised(mapping: Mapping, path: Path) -> None:
    """A checkpoint saved from a quantised model lacks the float weights this code rounds itself."""
    for key, value in mapping.items():
        packed = isinstance(key, str) and "_packed_params" in key
        if packed or (isinstance(value, torch.Tensor) and value.is_quantized):
            raise CheckpointError(
                f"Checkpoint file {path} holds already quantised (int8) weights ('{key}'). This plugin "
                "quantises the original float weights itself when asked (precision 'int8'): use the "
                "original float32 or bf16 checkpoint."
            )


def _count_sam_keys(mapping: Mapping) -> int:
    return sum(
        1
        for k, v in mapping.items()
        if isinstance(k, str) and isinstance(v, torch.Tensor) and _strip_foreign_prefixes(k).startswith(SAM_PARTS)
    )


def _strip_foreign_prefixes(key: str) -> str:
    # Wrappers can stack ("module.sam.image_encoder..."), so strip repeatedly,
    # but never strip from a key that already names a SAM part.
    while not key.startswith(SAM_PARTS):
        for prefix in _FOREIGN_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        else:
            return key
    return key
