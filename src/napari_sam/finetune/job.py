"""One fine-tuning run: the ``train`` command in its own process, watched from napari.

The run is a separate process (the same Python, so the same environment):
napari stays responsive, the GPU is used where there is one (``--device
auto``), and Cancel stops it at once (SIGTERM, then SIGKILL after a short
grace). The process dies with napari (see :mod:`.child`).

Steps of a run:
1. check the series (enough labelled objects), take the series' run lock and
   pick the next versioned name, ``DIR/models/<base>-ft<N>.pt``;
2. start ``train`` writing that file (it writes atomically, at the end only)
   and read its progress lines (step, loss, time left) and its last errors;
3. with a time budget, stop it when the minutes of training are used up
   (``train`` saves its state at the step reached) and let ``train`` write the
   model from there (a second run with ``--steps`` = that step);
4. register the model (its record beside it) only when the process exited 0,
   the file loads and, with held-out images, the report is there.

A cancelled or failed run registers nothing and leaves nothing behind: its
model file (if any), report, resumable state and temporary files are
removed. The dock does not resume runs; it starts a new one.
"""

from __future__ import annotations

import collections
import copy
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import lines
from .checks import RunLock, check_enough_objects
from .models import ModelRecord, family_name, next_model_path, report_path, write_record

TRAIN_ENTRY = "napari_sam.cli"
CANCEL_GRACE_S = 3.0  # SIGTERM makes train save its state: a small model does in well under a second
BUDGET_GRACE_S = 120.0  # at the end of a time budget that state is needed: give a large model time to write it
_STOPPED_AT = re.compile(r"after step (\d+)")


class NotRegistered(Exception):
    """The process ended well, but its model cannot be registered (missing, unreadable, no report)."""


@dataclass
class JobState:
    """What the dock shows; a copy, safe to read in any thread."""

    phase: str = "starting"  # starting, training, finishing, done, failed, cancelled
    step: int = 0
    total: int = 0
    loss: float | None = None
    seconds_left: float | None = None
    line: str = ""  # the last line that was not a step line (loading, evaluating, saving)
    error: str = ""
    record: ModelRecord | None = None

    @property
    def finished(self) -> bool:
        return self.phase in ("done", "failed", "cancelled")


# The demo model and its fine-tunes keep a share of generated nuclei in every fine-tuning step: measured
# (bench_data_engine.py, 2 rounds on tissue), without it the demo's own nuclei fell from mSA 0.742 to 0.512,
# with 0.3 they keep 0.672 and both of the new domain's targets are still met (NoC@90 -79 %, mSA +0.665).
DEMO_FAMILY, DEMO_REPLAY = "demo", 0.3


class FineTuneJob:
    """Fine-tune ``base_model`` on the labelled images of the series folder ``series``."""

    def __init__(self, series, base_model: str, *, steps: int = 200, held_out: float = 0.0,
                 minutes: float | None = None, device: str = "auto", extra_args: tuple = (),
                 entry: str = TRAIN_ENTRY, models_folder=None) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
        if minutes is not None and not minutes > 0:
            raise ValueError(f"the time budget must be a positive number of minutes, got {minutes!r}")
        if not 0 <= held_out < 1:
            raise ValueError(f"the held-out share must lie in [0, 1), got {held_out!r}")
        self.series = Path(series).expanduser()
        self.models_folder = Path(models_folder) if models_folder is not None else self.series / "models"
        self.base_model, self.steps, self.held_out = str(base_model), steps, float(held_out)
        self.minutes, self.device, self.extra_args, self.entry = minutes, device, tuple(extra_args), entry
        self.out: Path | None = None
        self._state = JobState()
        self._guard = threading.Lock()
        self._lock = RunLock(self.models_folder)
        self._proc: subprocess.Popen | None = None
        self._cancelled = threading.Event()
        self._finished = threading.Event()
        self._stderr: collections.deque[str] = collections.deque(maxlen=30)
        self._temps_before: set[str] = set()
        self._readers: list[threading.Thread] = []
        self._t0 = 0.0

    # ------------------------------------------------------------------ start
    def start(self) -> Path:
        """Check, lock, and start the run; returns the model file it will write. ValueError when it cannot start."""
        if self._proc is not None:
            raise ValueError("this job was started already; make a new one for another run")
        check_enough_objects(self.series, self.held_out)
        try:
            self.models_folder.mkdir(exist_ok=True)
        except OSError as err:
            raise ValueError(f"cannot create the models folder {self.models_folder}: {err.strerror or err}") from None
        self._lock.acquire()  # a second run on this series is refused here
        try:
            self.out = next_model_path(self.models_folder, self.base_model)
            self._temps_before = set(self._temporary_files())
            self._t0 = time.monotonic()
            self._proc = self._spawn(self.steps)
        except BaseException:
            self._lock.release()
            raise
        threading.Thread(target=self._watch, name="napari-sam-finetune", daemon=True).start()
        return self.out

    def _command(self, steps: int) -> list[str]:
        argv = [sys.executable, "-m", "napari_sam.finetune.child", "--parent", str(os.getpid())]
        if threading.current_thread() is threading.main_thread():
            argv.append("--pdeathsig")  # see child.py: only a long-lived thread may be the parent
        argv += [self.entry, "train", "--data", str(self.series), "--init", self.base_model, "--out", str(self.out),
                 "--steps", str(steps), "--device", self.device]
        if self.held_out > 0:
            argv += ["--held-out", f"{self.held_out:g}", "--report", str(report_path(self.out))]
        if family_name(self.base_model) == DEMO_FAMILY:
            argv += ["--replay", f"{DEMO_REPLAY:g}"]
        return argv + list(self.extra_args)

    def _spawn(self, steps: int) -> subprocess.Popen:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        # The child imports this very napari_sam, also when napari found it through a changed sys.path.
        here = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([here] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        kwargs = {"start_new_session": True} if os.name == "posix" else {}
        try:
            proc = subprocess.Popen(
                self._command(steps), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, text=True, encoding="utf-8", errors="replace", bufsize=1, **kwargs,
            )
        except OSError as err:
            raise ValueError(f"cannot start the training process: {err}") from None
        self._readers = [
            threading.Thread(target=_read_lines, args=(stream, handle), name="napari-sam-finetune-read", daemon=True)
            for stream, handle in ((proc.stdout, self._on_stdout), (proc.stderr, self._stderr.append))
        ]
        for reader in self._readers:
            reader.start()
        return proc

    # ------------------------------------------------------------------ what the dock reads
    def state(self) -> JobState:
        with self._guard:
            return copy.copy(self._state)

    @property
    def running(self) -> bool:
        return self._proc is not None and not self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Until the run is over (registered, failed or cancelled); False on timeout."""
        return self._finished.wait(timeout)

    def _update(self, **fields) -> None:
        with self._guard:
            for k, v in fields.items():
                setattr(self._state, k, v)

    def _on_stdout(self, line: str) -> None:
        step = lines.parse_step(line)
        if self._training_since is None and (step is not None or line.startswith("training ")):
            self._training_since = time.monotonic()  # the time budget counts training, not loading or evaluating
        if line.startswith("saved ") or (step is not None and step.step >= step.total):
            self._training_done = True
        if step is None:
            if line.strip():
                self._update(line=line.strip())
            return
        self._update(phase="training", step=step.step, total=step.total, loss=step.loss,
                     seconds_left=step.seconds_left)

    # ------------------------------------------------------------------ cancel
    def cancel(self) -> None:
        """Stop the run now; nothing is registered and nothing it wrote is kept."""
        if self._proc is None or self._finished.is_set():
            return
        self._cancelled.set()
        _signal(self._proc, kill=False)

    # ------------------------------------------------------------------ the run's end
    def _watch(self) -> None:
        try:
            rc = self._wait_for(self._proc)
            if not self._cancelled.is_set() and self._budget_stopped:
                rc = self._finish_from_state(rc)
            if self._cancelled.is_set():
                self._clean_up()
                self._update(phase="cancelled", line="cancelled: nothing was registered")
            elif rc != 0:
                self._clean_up()
                self._update(phase="failed", error=lines.error_message(list(self._stderr), rc))
            else:
                self._register()
        except NotRegistered as err:
            self._clean_up()
            self._update(phase="failed", error=str(err))
        except Exception as err:  # never leave the dock waiting on a job that died here
            self._clean_up()
            self._update(phase="failed", error=f"{type(err).__name__}: {err}")
        finally:
            self._lock.release()
            self._finished.set()

    _budget_stopped = False
    _training_since: float | None = None
    _steps_done: int | None = None  # where a time budget stopped training
    # The last step is done: too late to stop for the time budget (train now scores the model on the
    # held-out images and writes it, outside the part of the run that a stop can save).
    _training_done = False

    def _wait_for(self, proc: subprocess.Popen) -> int:
        """Wait for ``proc``; kill it after a grace once cancelled; stop it when the time budget is spent."""
        stop_sent = None
        while True:
            try:
                rc = proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            since = self._training_since
            over = (self.minutes is not None and since is not None and now - since > self.minutes * 60
                    and not self._training_done)
            if over and not self._budget_stopped and not self._cancelled.is_set():
                self._budget_stopped = True
                self._update(line=f"the time budget of {self.minutes:g} min is used up: stopping at this step")
                _signal(proc, kill=False)
                stop_sent = now
            if self._cancelled.is_set() and stop_sent is None:
                stop_sent = now  # cancel() sent SIGTERM
            grace = CANCEL_GRACE_S if self._cancelled.is_set() else BUDGET_GRACE_S
            if stop_sent is not None and now - stop_sent > grace:
                _signal(proc, kill=True)
        for reader in self._readers:  # the last lines (the error message) are read before we judge the run
            reader.join(timeout=5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except (OSError, ValueError, AttributeError):
                pass
        return rc

    def _finish_from_state(self, rc: int) -> int:
        """The budget stopped train; it saved the step reached: a second run with --steps that step writes the model."""
        found = [int(m.group(1)) for ln in self._stderr if (m := _STOPPED_AT.search(ln))]
        partial = self.out.with_name(self.out.name + ".partial")
        if rc == 0:
            return 0  # it finished just before the stop
        if not found or not partial.exists():
            self._stderr.append("the time budget ended before the first training step was saved; "
                                "give more minutes (or fewer held-out images)")
            return rc or 1
        if found[-1] < 1:
            self._stderr.append("the time budget ended before the first training step; give more minutes")
            return rc or 1
        if self._cancelled.is_set():  # Cancel came while the first process ended
            return rc
        self._steps_done = found[-1]
        self._update(phase="finishing", step=found[-1], total=found[-1], seconds_left=None,
                     line=f"time budget used up at step {found[-1]}: writing the model")
        self._proc = self._spawn(found[-1])
        return self._wait_for(self._proc)

    def _register(self) -> None:
        out = self.out
        if not out.is_file():
            raise NotRegistered(f"the training process ended without writing {out}")
        self._update(phase="finishing", line=f"checking {out.name}")
        from napari_sam.model.zoo import load_model

        try:
            load_model(out, device="cpu")
        except Exception as err:
            raise NotRegistered(f"the new model {out.name} cannot be loaded ({err})") from None
        report = None
        if self.held_out > 0:
            try:
                report = json.loads(report_path(out).read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise NotRegistered(f"the held-out report of {out.name} is missing or unreadable ({err})") from None
            if not isinstance(report, dict) or "after" not in report:
                raise NotRegistered(f"the held-out report of {out.name} has no scores after training")
        record = ModelRecord(
            path=str(out), base_model=self.base_model, data=str(self.series),
            steps=int((report or {}).get("steps") or self._steps_done or self.steps),
            date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            minutes=round((time.monotonic() - self._t0) / 60, 2), held_out=self.held_out, device=self.device,
            report=report,
        )
        write_record(record)
        self._update(phase="done", record=record, line=f"{out.name} is ready: choose it to use it")

    def _temporary_files(self) -> list[str]:
        return [p.name for p in self.models_folder.glob(".tmp-*.tmp")]

    def _clean_up(self) -> None:
        """Remove everything this run wrote: nothing half-done may look like a model."""
        if self.out is None:
            return
        doomed = [self.out, self.out.with_name(self.out.name + ".partial"), report_path(self.out)]
        doomed += [self.models_folder / n for n in set(self._temporary_files()) - self._temps_before]
        for p in doomed:
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass


def _read_lines(stream, handle) -> None:
    try:
        for line in stream:
            handle(line.rstrip("\n"))
    except (OSError, ValueError):
        pass  # the pipe was closed under us: the process is gone


def _signal(proc: subprocess.Popen, kill: bool) -> None:
    try:
        proc.kill() if kill else proc.terminate()
    except OSError:
        pass  # ended in the meantime
