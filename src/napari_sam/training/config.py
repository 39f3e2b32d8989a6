"""Model sizes the trainer knows by name.

``demo`` is the architecture of the model shipped with the plugin: a SAM of
the original design, small enough to train on a laptop CPU in under an hour
and to embed a 256-pixel image in a fraction of a second.

Nuclei in a 256-pixel field can be 12 pixels across and pressed against big
neighbours. With SAM's patch 16 one token covers a small nucleus and part of
its neighbour, and the masks bled into the neighbour (mean IoU 0.63 on
nuclei under 300 pixels). Patch 8 (a 32 x 32 embedding, 128 x 128 masks) and
a 128-wide decoder gave the best held-out IoU per CPU-second of training
among the sizes we compared: trained for the same 27 CPU-minutes, mean IoU
0.79 for a centre click and 0.83 for a box, against 0.76 / 0.79 with a
64-wide decoder (benchmarks/bench_demo_model.py). A bf16 step on a 2-core
AVX512-BF16 CPU costs about 1 s, 1.25 s with the loss at the input size
(``--full-size-loss``). The shipped model had 3000 steps, the last 40 % with
the full-size loss, then 300 more at a lower learning rate with it: 59 minutes
in all (the commands are in the README).
"""

from napari_sam.model.build import PRESETS, SamConfig, tiny_config

DEMO_CONFIG = SamConfig(
    "custom",
    encoder="vit",
    image_size=256,
    patch_size=8,
    encoder_dim=128,
    encoder_depth=4,
    encoder_heads=4,
    window_size=8,
    global_attn_indexes=(1, 3),
    prompt_dim=128,  # a multiple of 16: 8 decoder heads, still whole after the 2x downsampled cross-attention
    decoder_depth=2,
    decoder_mlp_dim=512,
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
