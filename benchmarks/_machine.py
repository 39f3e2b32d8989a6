"""What the benchmark scripts print about the machine they ran on."""


def load_average() -> str:
    """The machine's 1-minute load average: timings on a shared CPU mean little without it."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "unknown"


# CPU features that decide which precision is fast: bf16 is native only with AVX512-BF16 or AMX,
# int8 products are fast with VNNI; without AVX-512 the float32 path is the one to use.
_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def cpu_summary() -> str:
    """One line: the CPU model, its core count and which of the flags that matter here it has."""
    import os

    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "unknown CPU":
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        import platform

        model = platform.processor() or model
    have = [f for f in _FLAGS if f in flags] if flags else ["flags unknown"]
    missing = [f for f in _FLAGS if flags and f not in flags]
    text = f"CPU: {model}, {os.cpu_count()} cores; has {' '.join(have) or 'none of'}"
    if missing:
        text += f"; lacks {' '.join(missing)}"
    return text
