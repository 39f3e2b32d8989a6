"""Writing training results so that a crash never leaves a half-written file.

Every file is first written to a temporary file in the same folder, flushed
to disk, then renamed over the final name: the rename is atomic, so the final
name holds either the old complete file or the new complete file.
"""

import dataclasses
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
    write_atomically(path, lambda f: torch.save(obj, f))


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
