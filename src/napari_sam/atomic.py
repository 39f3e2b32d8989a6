"""Write a file so that a crash, a full disk or a kill never leaves half of it.

The content goes to a temporary file in the same folder, is flushed to disk,
and is then renamed over the final name (``os.replace`` is atomic), so the
final name holds either the old complete file or the new complete one. Used
for training checkpoints and for cached embeddings.
"""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomically(path, write: Callable[[BinaryIO], None], temp_prefix: str = ".tmp-") -> None:
    """Call ``write(f)`` on a temporary file, then move it to ``path``; raises OSError on failure."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass
    fsync_folder(path.parent)


def fsync_folder(folder) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where folders can't be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
