"""Reading the ``train`` command's progress lines (training/loop.py prints them).

A step line looks like::

    step 10/20  loss 0.2667  mIoU 0.701 first prompt, 0.820 after 3 round(s)  lr 3.9e-04  0.82 it/s  ETA 0:12

The dock shows the step, the loss and the time left; every other line on
stdout (loading, evaluating on held-out images, saving) is shown as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STEP = re.compile(
    r"^step (?P<step>\d+)/(?P<total>\d+)\s+loss (?P<loss>\S+)"
    r"(?:.*?mIoU (?P<miou>[\d.]+|nan))?"
    r"(?:.*?(?P<rate>[\d.]+) it/s)?"
    r"(?:.*?ETA (?P<eta>\d+(?::\d\d){1,2}))?"
)
# The prefix of the command's own error lines (cli.py): the message the user needs.
ERROR_PREFIX = "napari-sam-annotator train"


@dataclass(frozen=True)
class StepLine:
    step: int
    total: int
    loss: float
    seconds_left: float | None  # None when the line has no ETA
    first_prompt_miou: float | None = None


def eta_seconds(text: str) -> int:
    """``"1:02:03"`` or ``"2:03"`` -> seconds."""
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def parse_step(line: str) -> StepLine | None:
    """The step line's numbers, or None for any other line."""
    m = _STEP.match(line.strip())
    if m is None:
        return None
    try:
        loss = float(m["loss"])
    except ValueError:
        loss = float("nan")
    miou = m["miou"]
    return StepLine(
        int(m["step"]), int(m["total"]), loss,
        float(eta_seconds(m["eta"])) if m["eta"] else None,
        float(miou) if miou is not None else None,
    )


def error_message(stderr_lines: list[str], returncode: int) -> str:
    """What went wrong, in the command's words: its last error line (else its last line)."""
    lines = [ln.strip() for ln in stderr_lines if ln.strip()]
    for line in reversed(lines):
        if line.startswith(ERROR_PREFIX):
            text = line[len(ERROR_PREFIX):].lstrip(": ")
            return text[len("error: "):] if text.startswith("error: ") else text
    if lines:
        return lines[-1]
    return f"the training process ended with exit status {returncode} and no message"
