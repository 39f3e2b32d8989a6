"""Sizes in words, the same way everywhere (docks, command line, messages).

Binary units, named as such: 1 MiB = 1024 x 1024 bytes. File managers on some
systems show decimal MB; the unit name says which one this is.
"""


def format_size(n_bytes) -> str:
    """``1536`` -> ``"1.5 KiB"``; ``2_200_000`` -> ``"2.1 MiB"``; below 1 KiB in bytes."""
    n = float(n_bytes)
    if n < 0:
        raise ValueError(f"a size cannot be negative, got {n_bytes!r}")
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")
