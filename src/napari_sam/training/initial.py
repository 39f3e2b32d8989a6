"""The model a training run starts from, and telling architectures apart.

A run starts from random weights of a size (``--init none --size demo``) or
from the weights of a zoo model or checkpoint file (``--init vit_t``); an
unfinished run may only be continued with the architecture it was started
with.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from napari_sam.model.build import SamConfig, build_sam, config_from_state_dict, load_weights

from .config import training_config

_VIT_ONLY = ("patch_size", "encoder_dim", "encoder_depth", "encoder_heads", "window_size", "global_attn_indexes")
_TINY_VIT_ONLY = ("tiny_embed_dims", "tiny_depths", "tiny_heads", "tiny_window_sizes")


def _architecture_key(cfg: SamConfig) -> dict:
    """The settings that shape the weights (the name and the other encoder's settings do not)."""
    key = dataclasses.asdict(cfg)
    del key["model_type"]
    for name in _TINY_VIT_ONLY if cfg.encoder == "vit" else _VIT_ONLY:
        del key[name]
    return key


def same_architecture(a: SamConfig, b: SamConfig) -> bool:
    return _architecture_key(a) == _architecture_key(b)


def describe_config(cfg: SamConfig) -> str:
    if cfg.encoder == "tiny_vit":
        return f"TinyViT {list(cfg.tiny_embed_dims)} at {cfg.image_size} px"
    return (
        f"ViT width {cfg.encoder_dim}, depth {cfg.encoder_depth}, patch {cfg.patch_size} at {cfg.image_size} px, "
        f"decoder width {cfg.prompt_dim}"
    )


def initial_model(init, size) -> tuple[torch.nn.Module, str]:
    """The model to start from: random weights of ``size``, or the weights of ``init``."""
    if init is None or (isinstance(init, str) and init.lower() == "none"):
        cfg = training_config(size if size is not None else "demo")
        return build_sam(cfg), "random weights"
    from napari_sam.model.checkpoint import read_state_dict
    from napari_sam.model.zoo import MODELS, fetch_checkpoint

    if isinstance(init, str) and init in MODELS:
        path = fetch_checkpoint(init)
        origin = f"model '{init}'"
    else:
        path = Path(init).expanduser()
        if not path.is_file():
            raise ValueError(
                f"--init {init}: neither a known model ({', '.join(MODELS)}, none) nor an existing checkpoint file"
            )
        origin = str(path)
    state = read_state_dict(path)
    found = config_from_state_dict(state, source=path)
    if size is not None:
        wanted = training_config(size)
        if not same_architecture(found, wanted):
            raise ValueError(
                f"--init {origin} holds a {describe_config(found)} model, but --size asks for "
                f"{describe_config(wanted)}; leave --size out to train at the size of the --init model"
            )
        found = wanted
    model = build_sam(found)
    load_weights(model, state, source=path)
    return model, origin
