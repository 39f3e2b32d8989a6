"""One writer per series: a lock file naming the process (pid and host) that may save.

A second napari window on the same series (in another process or in the
same one) opens it read-only and is told which process holds it, instead of
two windows overwriting each other's labels. A lock left by a process that
died (napari crashed, the machine was reset) is taken over: on the same host
the pid is checked; a lock from another host cannot be checked and is
respected (the message names the host and the lock file, to delete by hand
if that host is gone). A dead pid reused by a new process reads as alive:
the same message applies.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

# Folders locked by this process (resolved paths): a second window in the same process must not take them.
_held_here: set[str] = set()


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    since: str

    here: bool = False  # held by another window of this very process

    def describe(self) -> str:
        if self.here:
            return f"another window of this napari (process {self.pid})"
        return f"napari process {self.pid} on {self.host} (since {self.since})"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def _read(path: Path) -> LockHolder | None:
    try:
        data = json.loads(path.read_text())
        return LockHolder(int(data["pid"]), str(data["host"]), str(data.get("since", "?")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class SeriesLock:
    """The lock of one series folder; ``acquire()`` says whether this process may save."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.key = str(self.path.resolve())
        self.held = False
        self.holder: LockHolder | None = None  # the other process, when not held

    def acquire(self) -> bool:
        """Take the lock (True), or find who holds it (False, ``holder`` set)."""
        me = LockHolder(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S"))
        for _attempt in range(5):
            if self.key in _held_here:
                self.holder = LockHolder(me.pid, me.host, me.since, here=True)
                return False
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = _read(self.path)
                if other is None:  # being written this instant, or damaged: look again
                    time.sleep(0.05)
                    if _read(self.path) is None:
                        self._take_over(None)
                    continue
                if self._stale(other, me):
                    self._take_over(other)
                    continue
                self.holder = other
                return False
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": me.pid, "host": me.host, "since": me.since}, f)
            self.held, self.holder = True, None
            _held_here.add(self.key)
            return True
        raise OSError(f"could not take the lock {self.path}: it keeps changing; close other windows on this series")

    @staticmethod
    def _stale(other: LockHolder, me: LockHolder) -> bool:
        if other.host != me.host:
            return False  # cannot check a process on another machine
        # Our own pid and not held by a window here: left by an earlier, closed series of this process.
        return other.pid == me.pid or not _alive(other.pid)

    def _take_over(self, seen: LockHolder | None) -> None:
        """Remove a stale lock, unless another process replaced it since we read it."""
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        if _read(aside) != seen:  # someone took it over meanwhile: give theirs back
            os.replace(aside, self.path)
            return
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        _held_here.discard(self.key)
        mine = _read(self.path)
        if mine is not None and mine.pid == os.getpid() and mine.host == socket.gethostname():
            self.path.unlink(missing_ok=True)
