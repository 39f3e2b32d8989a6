"""The fine-tuned models of a series: versioned names and the record of each one.

A run from base model ``demo`` writes ``DIR/models/demo-ft1.pt``, the next
``demo-ft2.pt`` and so on; a run from ``demo-ft2.pt`` continues the count of
its family (``demo-ft3.pt``), its record names the exact file it started from.

A model is *registered* when its record ``<name>.json`` sits beside it: the
fine-tune job writes the record (atomically) only after the run ended well,
the file loaded and, with held-out images, the report was there. The model
list shows registered models only, so a cancelled, failed or interrupted run
never appears in it, whatever it left behind.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from napari_sam.atomic import write_atomically

RECORD_FORMAT = "napari-sam-finetune/1"
_VERSION = re.compile(r"-ft(\d+)$")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")


@dataclass
class ModelRecord:
    """Where a fine-tuned model came from and how it did on the held-out objects."""

    path: str  # the checkpoint
    base_model: str  # what training started from: a zoo name or a checkpoint file
    data: str  # the series folder trained on
    steps: int
    date: str  # ISO 8601, UTC, when the run ended
    minutes: float  # wall-clock training time, evaluation included
    held_out: float = 0.0  # share of the labelled images held out
    device: str = "auto"
    report: dict | None = None  # the train command's --report: before/after scores, held-out names, settings
    format: str = field(default=RECORD_FORMAT)

    @property
    def name(self) -> str:
        return Path(self.path).stem

    def scores(self, when: str) -> dict:
        """``when`` = "before" or "after": the held-out scores ({} without a report)."""
        return dict((self.report or {}).get(when) or {})


def family_name(model: str) -> str:
    """The name a model's fine-tuned versions share: the zoo name, or the file's stem without ``-ftN``."""
    text = str(model).strip()
    if not text:
        raise ValueError("no base model given: choose the model to fine-tune (a zoo name or a checkpoint file)")
    is_file = Path(text).suffix.lower() in CHECKPOINT_SUFFIXES or "/" in text or "\\" in text
    stem = Path(text).stem if is_file else text
    stem = _VERSION.sub("", stem)
    return _UNSAFE.sub("_", stem).strip("._") or "model"


def record_path(model_path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".json")


def report_path(model_path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".report.json")


def next_model_path(folder, base_model: str) -> Path:
    """``folder/<family>-ft<N>.pt`` with N one above every N already used there (finished or not).

    Leftovers of an interrupted run (``.pt.partial``, a report) keep their
    number taken: a new run never continues or overwrites an old one.
    """
    folder = Path(folder)
    family = family_name(base_model)
    pattern = re.compile(re.escape(family) + r"-ft(\d+)\.")
    used = [int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else ()) if (m := pattern.match(p.name))]
    return folder / f"{family}-ft{max(used, default=0) + 1}.pt"


def write_record(record: ModelRecord) -> Path:
    """Register the model: its record goes beside it, atomically (a crash leaves none or all of it)."""
    out = record_path(record.path)
    text = json.dumps(asdict(record), indent=2, sort_keys=True).encode()
    write_atomically(out, lambda f: f.write(text))
    return out


def read_record(path) -> ModelRecord:
    """The record of model file ``path``; ValueError when it is missing or not ours."""
    rp = record_path(path)
    try:
        data = json.loads(rp.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{rp} cannot be read as a fine-tuning record ({err})") from None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        raise ValueError(f"{rp} is not a fine-tuning record of this program")
    known = {k: data[k] for k in ModelRecord.__dataclass_fields__ if k in data}
    known["path"] = str(Path(path))  # the folder may have moved since: the file is where it is now
    try:
        return ModelRecord(**known)
    except TypeError as err:
        raise ValueError(f"{rp} lacks part of a fine-tuning record ({err})") from None


def list_models(folder) -> list[ModelRecord]:
    """The registered models in ``folder``, oldest first; models without a usable record are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for pt in folder.glob("*.pt"):
        if pt.name.startswith(".") or not record_path(pt).is_file():
            continue
        try:
            out.append(read_record(pt))
        except ValueError:
            continue
    return sorted(out, key=lambda r: (r.date, r.name))
