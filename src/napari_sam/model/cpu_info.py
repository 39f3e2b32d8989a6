"""What the CPU is and which instruction sets it has: the facts that decide which precision is fast.

Read once from ``/proc/cpuinfo`` (x86 "model name"/"flags", Arm "Model"/"Features"); elsewhere the
platform module gives the name and the flags stay unknown. Used by the precision choice (its
per-machine cache key) and by every benchmark's header line.
"""

from __future__ import annotations

import functools
import platform

# Flags that change which kernels PyTorch runs: bf16 is native only with AVX512-BF16 or AMX, int8
# products are fast with VNNI; without AVX-512 the float32 path is usually the one to use.
PRECISION_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8",
                   "asimd")


@functools.lru_cache(maxsize=1)
def cpu_model_and_flags() -> tuple[str, frozenset[str]]:
    """(CPU model name, its flags); ("unknown CPU", empty) where nothing can be read."""
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "Model") and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown CPU", flags
