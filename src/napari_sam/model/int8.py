"""int8 weights for the image encoder's linear layers, for CPUs without native bf16.

On a CPU without AVX512-BF16 or AMX, bf16 is emulated (slower than float32)
and float32 runs near the machine's matrix-product floor, so only cheaper
operations make the encoder faster there. An 8-bit integer product is one:
oneDNN's int8 kernels ran at about twice the float32 rate on an AVX2-only CPU.

How: every ``nn.Linear`` of the encoder (the qkv / output projections and
the MLPs, about 70 % of vit_b's operations) gets its weight rounded once, at
load, to int8 with one scale per output channel. At each call the input is
rounded to uint8 with one scale for the whole tensor, chosen from its range
("dynamic" quantisation), the product runs in integers and comes back as
float32. Convolutions, attention, LayerNorm and the mask decoder stay float32.

The int8 copy lives with the predictor only; the user's model and checkpoint
keep their float32 weights.
"""

import copy
import functools
import os
import warnings

import torch
from torch import nn

# The int8 backends PyTorch ships for x86/ARM, best first. oneDNN measured
# fastest on an AVX512 EPYC (760 vs 520-640 GOP/s for fbgemm/x86) and, unlike
# fbgemm, obeys ONEDNN_MAX_CPU_ISA, so an AVX2-only CPU can be emulated honestly.
_ENGINES = ("onednn", "x86", "fbgemm", "qnnpack")


@functools.lru_cache(maxsize=1)
def int8_engine() -> str | None:
    """The quantised backend used for int8 products here, or None if PyTorch has none."""
    supported = getattr(torch.backends.quantized, "supported_engines", [])
    return next((e for e in _ENGINES if e in supported), None)


def cpu_has_int8_kernels() -> bool:
    """True when int8 products are worth trying: a quantised backend and vector integer units.

    Without AVX2 (x86) or NEON (ARM) the integer kernels fall back to scalar
    code, much slower than float32.
    """
    if int8_engine() is None:
        return False
    capability = torch.backends.cpu.get_cpu_capability()  # "AVX2", "AVX512", "DEFAULT", "NEON", ...
    return capability != "DEFAULT" or int8_engine() == "qnnpack"


@functools.lru_cache(maxsize=1)
def cpu_has_vnni() -> bool:
    """True when the CPU multiplies 8-bit integers with VNNI (32-bit sums, no overflow).

    Without VNNI (plain AVX2) the kernels add pairs of uint8 x int8 products
    in 16 bits, which overflow for large inputs: there the input is rounded
    to 7 bits instead ("reduce_range"). Honours ONEDNN_MAX_CPU_ISA, which
    limits oneDNN to an older instruction set.
    """
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if limit and limit != "ALL" and not any(tag in limit for tag in ("VNNI", "BF16", "AMX", "FP16", "AVX10")):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


class Int8Linear(nn.Module):
    """A linear layer with int8 weights (per output channel) and dynamically quantised input."""

    def __init__(self, layer: nn.Linear, engine: str | None = None, reduce_range: bool | None = None) -> None:
        super().__init__()
        engine = engine or int8_engine()
        if engine is None:
            raise ValueError("this PyTorch build has no int8 (quantised) backend; use precision 'fp32'")
        weight = layer.weight.detach().float()
        # Symmetric per-channel scales: a channel's largest weight becomes +-127.
        scales = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        bias = None if layer.bias is None else layer.bias.detach().float().clone()
        previous = torch.backends.quantized.engine
        try:
            # The packed weights remember their backend; the global setting is
            # only needed while packing.
            torch.backends.quantized.engine = engine
            with warnings.catch_warnings():
                # PyTorch marks quantised tensors as deprecated; the kernels are still the
                # fast int8 path on the CPU. Checked in tests/model/test_int8.py.
                warnings.simplefilter("ignore", UserWarning)
                qweight = torch.quantize_per_channel(
                    weight, scales.double(), torch.zeros(len(scales), dtype=torch.long), 0, torch.qint8
                )
                self._packed = torch.ops.quantized.linear_prepack(qweight, bias)
        finally:
            torch.backends.quantized.engine = previous
        self.in_features, self.out_features = layer.in_features, layer.out_features
        # Kept as plain float32: ViT's window padding is filled with the qkv bias.
        self.bias = bias
        self.engine = engine
        self.reduce_range = not cpu_has_vnni() if reduce_range is None else reduce_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise TypeError(f"int8 linear layers take float32 CPU input, got {x.dtype} on {x.device}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.in_features)
        y = torch.ops.quantized.linear_dynamic(flat, self._packed, self.reduce_range)
        return y.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 ({self.engine})"


def int8_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` whose ``nn.Linear`` layers are :class:`Int8Linear`; ``module`` is unchanged.

    The float32 weights of the linear layers are not copied (they are
    replaced), so the copy costs about a quarter of their memory, not all of it.
    """
    if not cpu_has_int8_kernels():
        raise ValueError(
            "int8 was asked for, but this CPU or PyTorch build has no fast int8 kernels (it would be much "
            "slower than float32); use precision 'fp32' or 'auto'"
        )
    if any(p.device.type != "cpu" for p in module.parameters()):
        raise ValueError("int8 runs on the CPU only; use precision 'fp32' or 'bf16' on a GPU")
    engine = int8_engine()
    # deepcopy's memo maps each linear layer straight to its replacement.
    memo = {id(m): Int8Linear(m, engine) for m in module.modules() if isinstance(m, nn.Linear)}
    if not memo:
        raise ValueError(f"{type(module).__name__} has no linear layers to run in int8")
    return copy.deepcopy(module, memo)
