"""What the benchmark scripts print about the machine they ran on."""


def load_average() -> str:
    """The machine's 1-minute load average: timings on a shared CPU mean little without it."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "unknown"
