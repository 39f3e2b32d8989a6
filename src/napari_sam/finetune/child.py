"""The training process's first lines: it dies with napari, then runs the command.

``python -m napari_sam.finetune.child --parent PID [--pdeathsig] ENTRY ARGS...``

A training run started from napari must not outlive it: a napari that was
killed or crashed cannot cancel it, and the run would hold the CPU (or GPU)
and a half-written model for nobody. Two guards, so at least one holds on
every platform:

* the parent keeps this process's stdin open and never writes to it; when the
  parent dies, however it dies, the operating system closes that pipe, the
  read below returns (end of file) and this process exits at once;
* on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` has the kernel kill this
  process when its parent dies, even when a grandchild of napari holds the
  pipe open. The parent asks for it (``--pdeathsig``) only when it starts us
  from its main thread: Linux sends that signal when the *thread* that
  started the child ends, which a worker thread may do long before napari.

ENTRY is a module run as ``__main__`` (``napari_sam.cli``: the ``train``
command itself) or a Python file (the tests' stand-in for it).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading

# The exit status of a run stopped because napari went away (128 + SIGHUP, as a closed terminal does).
PARENT_GONE = 128 + 1


def _die_with_parent_linux() -> None:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl (musl without it, sandboxes): the pipe guard remains
        pass


def _watch_stdin() -> None:
    """Block until the parent's end of our stdin closes, then stop this process now."""
    # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader makes
    # Python abort at exit ("could not acquire lock for <stdin>").
    fd = sys.stdin.fileno()
    try:
        while os.read(fd, 1 << 16):
            pass  # the parent writes nothing; anything read is ignored
    except OSError:
        pass
    os._exit(PARENT_GONE)  # no clean-up: the parent is gone, nobody waits for a tidy end


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "--parent":
        raise SystemExit("usage: python -m napari_sam.finetune.child --parent PID [--pdeathsig] ENTRY ARGS...")
    parent = int(argv[1])
    rest = argv[2:]
    if rest and rest[0] == "--pdeathsig":
        rest = rest[1:]
        if sys.platform.startswith("linux"):
            _die_with_parent_linux()
    # The parent may have died before the guards were in place.
    if hasattr(os, "getppid") and os.name == "posix" and os.getppid() != parent:
        os._exit(PARENT_GONE)
    threading.Thread(target=_watch_stdin, name="parent-watch", daemon=True).start()
    entry, args = rest[0], rest[1:]
    sys.argv = [entry, *args]
    if entry.endswith(".py"):
        runpy.run_path(entry, run_name="__main__")
    else:
        runpy.run_module(entry, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
