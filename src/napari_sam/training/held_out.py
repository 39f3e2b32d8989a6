"""``train --held-out``: labelled images kept out of training, and the model scored on them before and after.

The images held out are chosen by :mod:`napari_sam.evaluation.held_out`'s
rule (a hash of the image's name), so they stay the same in every round of
fine-tuning on a growing folder. Training draws only from the others. Before
the first step the base model (``--init``) is scored on the held-out images,
after the last step the trained one, each with its automatic settings tuned
on them (:func:`napari_sam.evaluation.evaluate`); the trained model's tuned
settings go into the checkpoint, and both scores into ``--report``.
"""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path

import numpy as np

from napari_sam.atomic import write_atomically

from ..evaluation.held_out import check_share, split_names
from .data import FolderSource

#: Fewer labelled objects than this left to train on is refused: a few steps would only memorise them.
MIN_TRAINING_OBJECTS = 10


def _read_example(entry) -> tuple[np.ndarray, np.ndarray]:
    import tifffile

    image, labels = tifffile.imread(entry.image), tifffile.imread(entry.labels)
    if entry.plane is not None:
        image, labels = image[entry.plane], labels[entry.plane]
    if labels.ndim == 3 and labels.shape[-1] == 1:
        labels = labels[..., 0]
    return np.asarray(image), np.asarray(labels)


def _count_objects(examples) -> int:
    return sum(int(np.count_nonzero(np.unique(labels))) for _, labels in examples)


class HeldOut:
    """The held-out images of a folder source, and the source of the rest to train on."""

    def __init__(self, source, share: float) -> None:
        check_share(share)
        if not isinstance(source, FolderSource):
            raise ValueError(
                "--held-out needs a folder of your labelled images as --data (generated nuclei have no fixed images "
                "to hold out); leave --held-out out to train on generated data")
        names = sorted({e.image.stem for e in source.entries})
        if len(names) < 2:
            raise ValueError(
                f"--held-out needs at least 2 labelled images (one to hold out, one to train on); {source.root} has "
                f"{len(names)}: label more images or leave --held-out out")
        trained, held = split_names(names, share)
        self.names = held
        self.examples = [_read_example(e) for e in source.entries if e.image.stem in held]
        self.objects = _count_objects(self.examples)
        kept = [e for e in source.entries if e.image.stem not in held]
        train_objects = _count_objects(_read_example(e) for e in kept)
        if self.objects == 0 or train_objects < MIN_TRAINING_OBJECTS:
            raise ValueError(
                f"too few labelled objects: holding out {len(held)} of {len(names)} images ({', '.join(held)}; "
                f"{self.objects} objects) leaves {train_objects} objects in {len(trained)} images to train on; "
                f"fine-tuning needs at least {MIN_TRAINING_OBJECTS} objects to train on and at least one held out: "
                "label more objects (or images), or hold out a smaller share")
        self.training_source = copy.copy(source)
        self.training_source.entries = kept
        self.training_source.description = (
            f"{len(trained)} image/label pair(s) in {source.root} ({len(held)} held out)")
        self.scores: dict[str, dict] = {}
        self.auto_settings: dict = {}

    def evaluate(self, which: str, model, base_settings: dict, log) -> dict:
        """Score ``model`` (``which``: "before" or "after") and return the automatic settings tuned for it."""
        from ..evaluation import evaluate

        what = "the base model" if which == "before" else "the trained model"
        log(f"evaluating {what} on {len(self.examples)} held-out image(s) ({self.objects} objects) ...")
        was_training = model.training
        model.eval()
        try:
            scores, settings, _ = evaluate(model, self.examples, base_settings)
        finally:
            model.train(was_training)
        log(f"{what}: " + describe_scores(scores))
        self.scores[which] = scores
        if which == "after":
            self.auto_settings = settings
        return settings


def describe_scores(scores: dict) -> str:
    return (f"one-click IoU {scores['one_click_iou']:.3f}, NoC@90 {scores['noc90']:.2f}, "
            f"{100 * scores['accepted_share']:.0f} % accepted, automatic mSA {scores['msa']:.3f} "
            f"({scores['objects']} objects)")


def provenance(options, held_names) -> dict:
    """Where a trained model came from, kept in its checkpoint (plain strings and numbers only)."""
    init = options.init
    return {
        "base_model": "none" if init is None else str(init),
        "data": str(options.data),
        "steps": int(options.steps),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "held_out": list(held_names),
        "replay": float(getattr(options, "replay", 0.0)),
        "crowded": float(getattr(options, "crowded", 0.0)),
        # The rest of what a run needs to be repeated (the README's recipe for the demo model).
        "seed": int(options.seed),
        "lr": float(options.lr),
        "rounds": int(options.rounds),
        "batch_size": int(options.batch_size),
        "objects_per_image": int(options.objects_per_image),
        "full_size_loss": float(options.full_size_loss),
        "precision": str(options.precision),
        "half": bool(options.half),
    }


def check_report_path(path) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"--report {path} is a folder; give the name of the JSON file to write")
    if not path.parent.is_dir():
        raise ValueError(f"--report {path}: the folder {path.parent} does not exist")
    return path


def write_report(path, held: HeldOut | None, steps: int, minutes: float) -> None:
    """The JSON report, written atomically: scores before and after, held-out names, tuned settings, steps, minutes."""
    report = {
        "before": held.scores.get("before") if held else None,
        "after": held.scores.get("after") if held else None,
        "held_out": list(held.names) if held else [],
        "auto_settings": dict(held.auto_settings) if held else {},
        "steps": int(steps),
        "minutes": round(float(minutes), 3),
    }
    text = json.dumps(report, indent=2).encode("utf-8")
    write_atomically(Path(path), lambda f: f.write(text))
