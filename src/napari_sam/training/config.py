"""Model sizes the trainer knows by name.

``demo`` is the architecture of the model shipped with the plugin: a SAM of
the original design, small enough to train on a laptop CPU in under an hour
and to embed a 256-pixel image in a fraction of a second. Patch 16 keeps
SAM's ratio of 4 between the input and the low-resolution masks.
"""

from napari_sam.model.build import PRESETS, SamConfig, tiny_config

DEMO_CONFIG = SamConfig(
    "custom",
    encoder="vit",
    image_size=256,
    patch_size=16,
    encoder_dim=128,
    encoder_depth=4,
    encoder_heads=4,
    window_size=8,
    global_attn_indexes=(1, 3),
    prompt_dim=64,  # a multiple of 16: 8 decoder heads, still whole after the 2x downsampled cross-attention
    decoder_depth=2,
    decoder_mlp_dim=256,
)

#: Names accepted by ``train --size``: our small sizes plus the official ones.
TRAINING_PRESETS: dict[str, SamConfig] = {
    "demo": DEMO_CONFIG,
    "tiny": tiny_config(128),
    **PRESETS,
}


def training_config(name_or_config) -> SamConfig:
    """A SamConfig from a preset name (or a SamConfig, returned as it is)."""
    if isinstance(name_or_config, SamConfig):
        return name_or_config
    if isinstance(name_or_config, str) and name_or_config in TRAINING_PRESETS:
        return TRAINING_PRESETS[name_or_config]
    raise ValueError(
        f"unknown model size {name_or_config!r}; expected one of {', '.join(TRAINING_PRESETS)}"
    )
