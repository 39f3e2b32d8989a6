"""Claims on slices being computed, so that two programs filling one cache share the work.

Before a slice is run through the encoder, a claim file ``<entry>.claim`` is
created next to where its entry will be, with ``O_CREAT | O_EXCL``: of two
processes (an ``embed`` on the command line and napari's *Embed stack*, or
two ``embed`` runs) only one gets it. The other moves on to other slices and
comes back for this one later, reading the entry when it appears.

A claim holds the owner's process id, host name and the time it was made. It
is taken over when it is *stale*: its process is gone (same host), or it is
older than :data:`STALE_AFTER_S` (a crashed run on another host, or one
frozen). At worst a slice is then computed twice, which costs time only:
entries are written atomically and the same slice gives the same entry.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import uuid
from pathlib import Path

logger = logging.getLogger(__name__)

CLAIM_SUFFIX = ".claim"
#: A claim older than this is abandoned (one slice takes seconds, a minute for vit_h on a slow CPU).
STALE_AFTER_S = 15 * 60


class Claim:
    """A slice this process computes; :meth:`release` when its entry is written (or it failed)."""

    def __init__(self, path: Path | None, token: str = ""):
        self.path = path  # None: nothing was claimed (the folder takes no files), compute anyway
        self.token = token

    def release(self) -> None:
        if self.path is None:
            return
        try:
            if _read(self.path).get("token") == self.token:  # never remove a claim taken over from us
                self.path.unlink()
        except OSError:
            pass


def try_claim(path: Path, stale_after_s: float = STALE_AFTER_S) -> Claim | None:
    """Claim ``path`` for this process; None while another live process holds it."""
    for _ in range(2):  # a stale claim is removed once, then claimed afresh
        token = uuid.uuid4().hex
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not is_stale(path, stale_after_s):
                return None
            logger.info("taking over the abandoned claim %s", path)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                return None
            continue
        except OSError:
            return Claim(None)  # a read-only or missing folder: nothing to share, compute
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), "token": token}, f)
        return Claim(path, token)
    return None


def is_stale(path: Path, stale_after_s: float = STALE_AFTER_S) -> bool:
    """True when the claim's process is gone or the claim is older than ``stale_after_s``."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if age > stale_after_s:
        return True
    info = _read(path)
    pid = info.get("pid")
    if info.get("host") == socket.gethostname() and isinstance(pid, int):
        return not _process_alive(pid)
    return False  # being written this instant, or another host's: its age decides


def _read(path: Path) -> dict:
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _process_alive(pid: int) -> bool:
    if sys.platform.startswith("win"):
        return True  # os.kill would end the process there; the claim's age decides instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True
