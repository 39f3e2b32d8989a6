"""What the benchmark scripts print about the machine they ran on."""


def load_average() -> str:
    """The machine's 1-minute load average: timings on a shared CPU mean little without it."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "unknown"


def cpu_summary() -> str:
    """One line: the CPU model, its core count and which of the flags that matter here it has."""
    import os

    from napari_sam.model.cpu_info import PRECISION_FLAGS, cpu_model_and_flags

    model, flags = cpu_model_and_flags()
    wanted = [f for f in PRECISION_FLAGS if f != "asimd" or "asimd" in flags]  # asimd: Arm only
    have = [f for f in wanted if f in flags] if flags else ["flags unknown"]
    missing = [f for f in wanted if flags and f not in flags]
    text = f"CPU: {model}, {os.cpu_count()} cores; has {' '.join(have) or 'none of'}"
    if missing:
        text += f"; lacks {' '.join(missing)}"
    return text
