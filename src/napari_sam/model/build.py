"""Build a SAM model of a given size, with random weights or from a checkpoint file.

The official sizes (vit_b, vit_l, vit_h and MobileSAM's vit_t) are presets of
one configuration class; smaller configurations (the shipped demo model, fast
tests) use the same code.
"""

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .transformer import TwoWayTransformer


@dataclass(frozen=True)
class SamConfig:
    """Every number that fixes a SAM architecture."""

    model_type: str = "custom"
    encoder: str = "vit"  # "vit" (SAM) or "tiny_vit" (MobileSAM)
    image_size: int = 1024
    patch_size: int = 16
    # ViT encoder
    encoder_dim: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    # TinyViT encoder
    tiny_embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    tiny_depths: tuple[int, ...] = (2, 2, 6, 2)
    tiny_heads: tuple[int, ...] = (2, 4, 5, 10)
    tiny_window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    # prompt encoder + mask decoder
    prompt_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048

    @property
    def embedding_size(self) -> int:
        return self.image_size // self.patch_size


PRESETS: dict[str, SamConfig] = {
    "vit_b": SamConfig("vit_b"),
    "vit_l": SamConfig("vit_l", encoder_dim=1024, encoder_depth=24, encoder_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": SamConfig("vit_h", encoder_dim=1280, encoder_depth=32, encoder_heads=16, global_attn_indexes=(7, 15, 23, 31)),
    "vit_t": SamConfig("vit_t", encoder="tiny_vit"),
}


def tiny_config(image_size: int = 128, encoder: str = "vit") -> SamConfig:
    """A very small SAM (a fraction of a second per embedding) for tests."""
    return SamConfig(
        "custom",
        encoder=encoder,
        image_size=image_size,
        encoder_dim=32,
        encoder_depth=2,
        encoder_heads=2,
        window_size=4,
        global_attn_indexes=(1,),
        tiny_embed_dims=(16, 32, 40, 48),
        tiny_depths=(1, 1, 1, 1),
        tiny_heads=(1, 2, 2, 2),
        tiny_window_sizes=(4, 4, 4, 4),
        prompt_dim=32,
        decoder_mlp_dim=64,
    )


def _build_image_encoder(cfg: SamConfig) -> torch.nn.Module:
    if cfg.encoder == "vit":
        return ImageEncoderViT(
            img_size=cfg.image_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.encoder_dim,
            depth=cfg.encoder_depth,
            num_heads=cfg.encoder_heads,
            out_chans=cfg.prompt_dim,
            window_size=cfg.window_size,
            global_attn_indexes=cfg.global_attn_indexes,
        )
    if cfg.encoder == "tiny_vit":
        from .tiny_vit import TinyViT

        return TinyViT(
            img_size=cfg.image_size,
            embed_dims=cfg.tiny_embed_dims,
            depths=cfg.tiny_depths,
            num_heads=cfg.tiny_heads,
            window_sizes=cfg.tiny_window_sizes,
            out_chans=cfg.prompt_dim,
        )
    raise ValueError(f"unknown encoder {cfg.encoder!r}; expected 'vit' or 'tiny_vit'")


def _resolve(model_type) -> SamConfig:
    if isinstance(model_type, SamConfig):
        return model_type
    if isinstance(model_type, str) and model_type in PRESETS:
        return PRESETS[model_type]
    raise ValueError(f"unknown model type {model_type!r}; expected one of {', '.join(PRESETS)} or a SamConfig")


def build_sam(model_type="vit_b", checkpoint: str | Path | None = None) -> Sam:
    """Build SAM of ``model_type`` (vit_b, vit_l, vit_h, vit_t or a SamConfig).

    Without ``checkpoint`` the weights are random. With one, the file is read
    safely (no code can run) and must hold exactly this architecture.
    """
    cfg = _resolve(model_type)
    state = None
    if checkpoint is not None:
        from .checkpoint import CheckpointError, read_state_dict

        state = read_state_dict(checkpoint)
        found = config_from_state_dict(state, source=checkpoint)
        if found.encoder == "tiny_vit":
            # TinyViT's weights do not record the input size: the one asked for stands.
            found = replace(found, image_size=cfg.image_size)
        if _architecture(found) != _architecture(cfg):
            raise CheckpointError(
                f"{checkpoint} holds a {_describe(found)} model, but {_describe(cfg)} was asked for; "
                f"pick the matching model type or let load_model() infer it from the file"
            )
    model = _assemble(cfg)
    if state is not None:
        load_weights(model, state, source=checkpoint)
    return model.eval()


def _assemble(cfg: SamConfig) -> Sam:
    grid = cfg.embedding_size
    prompt_encoder = PromptEncoder(
        embed_dim=cfg.prompt_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(cfg.image_size, cfg.image_size),
    )
    mask_decoder = MaskDecoder(
        transformer_dim=cfg.prompt_dim,
        transformer=TwoWayTransformer(
            depth=cfg.decoder_depth, embedding_dim=cfg.prompt_dim, num_heads=cfg.decoder_heads, mlp_dim=cfg.decoder_mlp_dim
        ),
    )
    return Sam(_build_image_encoder(cfg), prompt_encoder, mask_decoder, config=cfg)


def load_weights(model: Sam, state: dict, source=None) -> None:
    """Load a state dict strictly, turning a key/shape mismatch into a readable error."""
    from .checkpoint import CheckpointError

    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        where = f"{source}" if source is not None else "the weights"
        # torch's first line is only a heading; the lines after it name the keys and shapes.
        lines = [line.strip() for line in str(err).splitlines()]
        details = "; ".join(line for line in lines[1:] if line) or lines[0]
        if len(details) > 600:  # a wholly different model lists hundreds of keys
            details = details[:600] + " ..."
        raise CheckpointError(f"{where} do not fit a {_describe(model.config)} model: {details}") from None


# Numbers only one encoder kind uses; the other kind's are ignored when comparing.
_VIT_FIELDS = ("encoder_dim", "encoder_depth", "encoder_heads", "window_size", "global_attn_indexes")
_TINY_VIT_FIELDS = ("tiny_embed_dims", "tiny_depths", "tiny_heads", "tiny_window_sizes")


def _architecture(cfg: SamConfig) -> SamConfig:
    """The config without its name, for comparing architectures.

    Fields the encoder does not use are reset to their defaults, and so are
    TinyViT's first-stage heads/window (that stage is convolutional): the
    weights cannot record them, so two configs differing only there build the
    same model.
    """
    default = SamConfig()
    unused = _TINY_VIT_FIELDS if cfg.encoder == "vit" else _VIT_FIELDS
    cfg = replace(cfg, model_type="custom", **{name: getattr(default, name) for name in unused})
    if cfg.encoder == "tiny_vit":
        cfg = replace(
            cfg,
            tiny_heads=(default.tiny_heads[0], *cfg.tiny_heads[1:]),
            tiny_window_sizes=(default.tiny_window_sizes[0], *cfg.tiny_window_sizes[1:]),
        )
    return cfg


def _describe(cfg: SamConfig) -> str:
    if cfg.model_type != "custom":
        return cfg.model_type
    if cfg.encoder == "tiny_vit":
        return f"TinyViT {cfg.tiny_embed_dims} at {cfg.image_size} px"
    return f"ViT (width {cfg.encoder_dim}, depth {cfg.encoder_depth}) at {cfg.image_size} px"


def _count(state: dict, pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for k in state for m in [regex.match(k)] if m}
    return max(found) + 1 if found else 0


def config_from_state_dict(state: dict, source=None) -> SamConfig:
    """Infer the architecture from the weights' names and shapes.

    Raises ValueError when the weights are not a SAM model we know.
    """
    where = f"{source}: " if source is not None else ""
    try:
        if "image_encoder.pos_embed" in state:
            cfg = _vit_config(state)
        elif "image_encoder.patch_embed.seq.0.c.weight" in state:
            cfg = _tiny_vit_config(state)
        else:
            raise KeyError("image_encoder.pos_embed")
        cfg = _decoder_config(state, cfg)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"{where}the weights are not a Segment Anything model this package knows "
            f"(ViT-B/L/H, MobileSAM vit_t, or a smaller SAM of the same design): missing or odd {err}"
        ) from None
    for name, preset in PRESETS.items():
        if _architecture(preset) == _architecture(cfg):
            return preset
    return cfg


def _vit_config(state: dict) -> SamConfig:
    pos = state["image_encoder.pos_embed"]
    patch = state["image_encoder.patch_embed.proj.weight"]
    dim, grid, p = pos.shape[-1], pos.shape[1], patch.shape[-1]
    depth = _count(state, r"image_encoder\.blocks\.(\d+)\.")
    windows, global_idx, heads = set(), [], set()
    for i in range(depth):
        rel = state[f"image_encoder.blocks.{i}.attn.rel_pos_h"]
        size = (rel.shape[0] + 1) // 2
        heads.add(dim // rel.shape[1])
        if size == grid:
            global_idx.append(i)
        else:
            windows.add(size)
    if len(windows) > 1 or len(heads) != 1:
        raise ValueError("image_encoder.blocks (mixed window sizes or head counts)")
    return SamConfig(
        encoder="vit",
        image_size=grid * p,
        patch_size=p,
        encoder_dim=dim,
        encoder_depth=depth,
        encoder_heads=heads.pop(),
        window_size=windows.pop() if windows else 14,
        global_attn_indexes=tuple(global_idx),
        prompt_dim=state["image_encoder.neck.0.weight"].shape[0],
    )


def _tiny_vit_config(state: dict) -> SamConfig:
    n_layers = _count(state, r"image_encoder\.layers\.(\d+)\.")
    dims, depths, heads, windows = [], [], [], []
    for i in range(n_layers):
        depths.append(_count(state, rf"image_encoder\.layers\.{i}\.blocks\.(\d+)\."))
        if i == 0:  # convolutional stage: width from its MBConv output
            dims.append(state["image_encoder.layers.0.blocks.0.conv3.c.weight"].shape[0])
            heads.append(1)
            windows.append(7)
            continue
        bias = state[f"image_encoder.layers.{i}.blocks.0.attn.attention_biases"]
        dims.append(state[f"image_encoder.layers.{i}.blocks.0.attn.qkv.weight"].shape[1])
        heads.append(bias.shape[0])
        windows.append(math.isqrt(bias.shape[1]))
    # The first stage is convolutional; the reference keeps nominal heads/window for it.
    base = PRESETS["vit_t"]
    heads[0], windows[0] = base.tiny_heads[0], base.tiny_window_sizes[0]
    # TinyViT's weights do not record the input size; MobileSAM is 1024 px.
    return SamConfig(
        encoder="tiny_vit",
        tiny_embed_dims=tuple(dims),
        tiny_depths=tuple(depths),
        tiny_heads=tuple(heads),
        tiny_window_sizes=tuple(windows),
        prompt_dim=state["image_encoder.neck.0.weight"].shape[0],
    )


def _decoder_config(state: dict, cfg: SamConfig) -> SamConfig:
    dim = state["mask_decoder.iou_token.weight"].shape[1]
    if dim != cfg.prompt_dim:
        raise ValueError("mask_decoder.iou_token.weight (width differs from the image encoder's neck)")
    depth = _count(state, r"mask_decoder\.transformer\.layers\.(\d+)\.")
    mlp_dim = state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]
    # Head counts leave no trace in the weights: every model of this design,
    # ours included, uses SAM's 8 decoder heads.
    return replace(cfg, decoder_depth=depth, decoder_mlp_dim=mlp_dim, decoder_heads=8)
