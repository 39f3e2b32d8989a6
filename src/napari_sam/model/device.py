"""Where the model runs and in which precision.

Device "auto": CUDA, then Apple MPS, then the CPU. Precision "auto": bfloat16
where it is both fast and accurate enough (CUDA GPUs that support it; CPUs
with AVX512-BF16 or AMX, whose matrix units do bf16 natively), float32
elsewhere. bf16 is used for the image encoder and the mask decoder; the
prompt encoder (whose Fourier features of click positions lose pixels in
bf16) and the statistics of every LayerNorm stay float32. Training uses the
same choice for its products, with float32 weights (``train --precision``).

For embedding images, :mod:`.precision_choice` decides "auto" per machine,
int8 included; :func:`pick_precision` is the rule training uses.
"""

import functools
import os

import torch

#: What the image encoder may compute in; "int8" is for the CPU (see .int8 and .precision_choice).
PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: What training may compute in (int8 has no gradients).
TRAINING_PRECISIONS = ("auto", "fp32", "bf16")


def pick_device(device=None) -> torch.device:
    """Resolve None/"auto"/"cpu"/"cuda"/"cuda:1"/"mps"/torch.device to a usable device."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device name such as 'cpu', 'cuda' or 'mps'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU here; use 'cpu' or 'auto'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for, but Apple's Metal backend is not available here")
    return dev


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU computes bf16 matrix products natively (AVX512-BF16 or AMX)."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        if probe is not None and not probe():
            return False
    except RuntimeError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_precision(precision: str, device: torch.device) -> torch.dtype:
    """Resolve "auto"/"fp32"/"bf16" to the dtype training computes its products in."""
    if precision == "int8":
        raise ValueError("int8 is for embedding images only; training computes in 'fp32' or 'bf16' ('auto')")
    if precision not in TRAINING_PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(TRAINING_PRECISIONS)}")
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        if device.type == "mps":
            raise ValueError("bf16 is not supported on Apple MPS here; use 'fp32' or 'auto'")
        return torch.bfloat16
    # auto
    if os.environ.get("NAPARI_SAM_PRECISION") in ("fp32", "bf16"):
        return pick_precision(os.environ["NAPARI_SAM_PRECISION"], device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32
