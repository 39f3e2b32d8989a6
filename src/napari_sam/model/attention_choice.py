"""Whether the ViT's global attention, in a bf16 encoder on this CPU, is faster computed in float32.

A ViT encoder's global-attention blocks (4096 tokens for a 1024-pixel input)
run in bf16 through PyTorch's fused attention kernel with the relative-position
bias folded into the product (``image_encoder._attend_folded``). With Intel's
AMX that kernel is fast. On CPUs with AVX512-BF16 but no AMX it is not: on a
2-core AMD EPYC one vit_b global attention took 0.85-0.89 s in bf16 against
0.55-0.57 s in float32 from the same bf16 inputs, and the four global blocks
cost vit_b's bf16 embedding more than its linear layers gained (6.2 s
against 6.4 s in float32). Which way is faster is measured here once per
machine (a smaller attention of vit_b's width each way, 1-2 s on a 2-core CPU) and
kept beside the matrix-product rates (:mod:`.precision_choice`), keyed the
same way. Float32 attention from bf16 inputs is no less accurate: it rounds
only the inputs.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

_CACHE_FILE = "attention_speed.json"


def measure_global_attention(tokens_side: int = 40, heads: int = 12, head_dim: int = 64,
                             repeats: int = 2) -> dict[str, float]:
    """Seconds for one attention over tokens_side ** 2 tokens with the relative-position bias, in bf16 both ways.

    vit_b's width (12 heads of 64) on 1600 tokens: 1-2 s in all on a 2-core
    CPU (warm-up and two turns each way), and the same ratio as the real 4096-token blocks (0.60-0.66
    against 0.63-0.66 measured on the EPYC above, natively and limited to
    AVX2). One head on 4096 tokens did not show it (0.91): the kernel works
    per head, and one head leaves it little to spread over the cores.
    """
    from .image_encoder import Attention

    gen = torch.Generator().manual_seed(0)
    layer = Attention(heads * head_dim, heads, (tokens_side, tokens_side)).eval().requires_grad_(False)
    with torch.no_grad():
        layer.rel_pos_h.normal_(0, 0.02, generator=gen)
        layer.rel_pos_w.normal_(0, 0.02, generator=gen)
    qkv = torch.randn(1, tokens_side, tokens_side, 3 * heads * head_dim, generator=gen).bfloat16()
    runs = {"bf16": (_in_dtype(layer, torch.bfloat16, fp32_global=False), qkv),
            "fp32": (_in_dtype(layer, torch.bfloat16, fp32_global=True), qkv)}
    times = {name: float("inf") for name in runs}
    with torch.inference_mode():
        for module, x in runs.values():
            module.attend(x)  # warms the kernels' choice of code
        # Taking turns, so that other work on the machine slows both ways alike; the best run of each counts.
        for _ in range(repeats):
            for name, (module, x) in runs.items():
                start = time.perf_counter()
                module.attend(x)
                times[name] = min(times[name], time.perf_counter() - start)
    return times


def _in_dtype(layer, dtype, fp32_global: bool):
    import copy

    module = copy.deepcopy(layer).to(dtype)
    module.float32_global_attention = fp32_global
    return module


def _cache_path() -> Path:
    from .zoo import cache_dir

    return cache_dir() / _CACHE_FILE


def _valid(entry) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("speeds"), dict):
        return False
    times = entry["speeds"]
    return set(times) == {"bf16", "fp32"} and all(isinstance(v, (int, float)) and v > 0 for v in times.values())


def float32_global_attention_pays(measure=None, path: Path | None = None) -> bool:
    """True where this machine computed the bf16 encoder's global attention faster in float32 (measured, cached)."""
    from .precision_choice import cached_measurement

    entry = cached_measurement(_cache_path() if path is None else Path(path), measure or measure_global_attention,
                               _valid, "the attention measurement")
    return entry["speeds"]["fp32"] < entry["speeds"]["bf16"]


def use_float32_global_attention(encoder: torch.nn.Module, on: bool = True) -> int:
    """Compute the global attention of a bf16 ViT encoder in float32 or not; returns how many attention layers
    were told (each acts on it only where it attends globally)."""
    from .image_encoder import Attention

    n = 0
    for module in encoder.modules():
        if isinstance(module, Attention):
            module.float32_global_attention = bool(on)
            n += 1
    return n
