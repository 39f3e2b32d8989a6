"""Keep the memory that a training step frees for the next step (glibc's malloc).

glibc's malloc serves every allocation of 32 MiB or more with fresh pages
from the kernel and hands them back when the block is freed. A training step
of the demo model allocates and frees blocks that large dozens of times (the
attention weights of a global attention layer: 4 images x 4 heads x 1024 x
1024 in bf16 are 32 MiB, their gradients as much), and the first write to
each fresh page is a page fault. On the 2-core CPU we train on, a product
writing such a block took 13 ms with fresh pages and 4 ms into reused memory,
a softmax 19 ms and 5 ms, and a whole demo training step 1.22 s and 1.00 s
(median of alternating runs in one process). Serving every allocation from
the heap and keeping up to 1 GiB of freed memory there removes those faults;
the cost is that the process gives freed memory back to the system later.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt() parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
KEEP_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse; False where that is not possible.

    Only Linux with glibc has ``mallopt``; elsewhere (macOS, Windows, musl)
    nothing changes and training runs as it would anyway.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
