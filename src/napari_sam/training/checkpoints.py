"""Writing training results so that a crash never leaves a half-written file.

Every file is first written to a temporary file in the same folder, flushed
to disk, then renamed over the final name: the rename is atomic, so the final
name holds either the old complete file or the new complete file.
"""

import dataclasses
import errno
import os
import shutil
import tempfile
from pathlib import Path

import torch

from napari_sam.atomic import write_atomically
from napari_sam.model.build import SamConfig

TRAINING_FORMAT = "napari-sam-training/1"
# Kept in float32 in half-precision files: the Fourier features of click
# positions lose whole pixels when this matrix is rounded.
KEEP_FLOAT32 = ("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",)


def partial_path(out: Path) -> Path:
    """Where the resumable state of a run writing ``out`` lives."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def save_atomic(obj, path: Path) -> None:
    """Write ``obj`` to ``path`` atomically; an OSError names ``path`` (not the temporary file) and the cause."""
    try:
        write_atomically(path, lambda f: torch.save(obj, f))
    except OSError as err:
        raise OSError(err.errno, f"cannot write {path}: {why_not_writable(err)}") from err


def why_not_writable(err: OSError) -> str:
    """The cause of a failed write, in words."""
    if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "the disk is full (or the quota is used up)"
    if err.errno == errno.EROFS:
        return "the folder is on a read-only file system"
    if err.errno in (errno.EACCES, errno.EPERM):
        return "no permission to write there"
    return err.strerror or str(err)


def check_writable_folder(folder: Path, needed_bytes: int = 0) -> None:
    """Raise a ValueError naming ``folder`` unless a file of ``needed_bytes`` can be written in it.

    Done before training starts: a folder found unwritable only when the
    model is written at the end costs the whole run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"the output folder {folder} does not exist; create it or choose another --out")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", suffix=".tmp", dir=folder)
    except OSError as err:
        raise ValueError(
            f"cannot write in the output folder {folder}: {why_not_writable(err)}; choose another --out"
        ) from None
    os.close(fd)
    os.unlink(probe)
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        raise ValueError(
            f"the output folder {folder} has {free / 1e6:.0f} MB free, but the model and the state to resume "
            f"from need about {needed_bytes / 1e6:.0f} MB; free some space or choose another --out"
        )


def run_bytes(model) -> int:
    """About the most disk space a run holds at once: two copies of the resumable state (weights and Adam's
    two moments) while a new one replaces the old."""
    weights = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    return 2 * 3 * weights


def model_weights(model, half: bool = False) -> dict[str, torch.Tensor]:
    """A plain SAM state dict (the official checkpoints' layout), optionally in float16."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if half:
        for k, v in state.items():
            if v.is_floating_point() and k not in KEEP_FLOAT32:
                state[k] = v.half()
    return state


def config_to_dict(cfg: SamConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def config_from_dict(d: dict) -> SamConfig:
    fields = {f.name: f for f in dataclasses.fields(SamConfig)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"the training checkpoint describes an unknown model setting: {sorted(unknown)}")
    return SamConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def save_training_state(path: Path, *, model, optimizer, step: int, config: SamConfig, options: dict, numpy_rng) -> None:
    save_atomic(
        {
            "format": TRAINING_FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": int(step),
            "config": config_to_dict(config),
            "options": options,
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": numpy_rng.bit_generator.state,
        },
        path,
    )


def load_training_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"the unfinished run {path} cannot be read ({type(err).__name__}); delete it or pass --restart"
        ) from None
    if not isinstance(state, dict) or state.get("format") != TRAINING_FORMAT:
        raise ValueError(f"{path} is not a training checkpoint of this program; delete it or pass --restart")
    return state


def read_provenance(path) -> dict:
    """Where a model file written by ``train`` came from (base model, data, steps, date, held-out images), or {}."""
    try:
        content = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:
        return {}  # not ours to judge here: loading the model reports a broken file
    found = content.get("provenance") if isinstance(content, dict) else None
    return dict(found) if isinstance(found, dict) else {}
