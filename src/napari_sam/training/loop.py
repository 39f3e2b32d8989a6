"""The training loop: images -> simulated clicks and boxes -> SAM learns to segment.

No napari or Qt here: this runs headless (``napari-sam-annotator train``).

One step: a batch of images is embedded once, then the objects in it are
segmented with simulated clicks and boxes (:mod:`.interactive`); the model to
start from comes from :mod:`.initial`. An interrupted run (Ctrl-C or SIGTERM)
is saved next to the output and continued by running the same command again.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_sam.model.build import SamConfig, build_sam, config_from_state_dict, load_weights
from napari_sam.model.device import TRAINING_PRECISIONS, pick_device, pick_precision

from ..auto.recommended import recommended_settings, with_auto_settings
from . import checkpoints
from .config import training_config
from .data import GeneratedSource, draw_prepared, encoder_batch, open_source
from .held_out import HeldOut, check_report_path, provenance, write_report
from .replay import MixedSource
from .initial import describe_config, initial_model, same_architecture
from .interactive import interactive_loss, select_objects
from .memory import keep_freed_memory
from .stopping import Terminated, stop_requests_held, stop_requests_interrupt


class TrainingInterrupted(Exception):
    """Training stopped early (Ctrl-C or SIGTERM); the state to resume from was saved."""

    def __init__(self, message: str, step: int, partial: Path, signal_number: int = signal.SIGINT):
        super().__init__(message)
        self.step = step
        self.partial = partial
        self.signal_number = signal_number  # SIGINT (Ctrl-C) or SIGTERM


@dataclass
class TrainOptions:
    out: Path
    data: str | Path = "generated"
    size: str | SamConfig | None = None  # None: the --init model's size, or "demo"
    init: str | Path | None = None  # None/"none", a zoo name, or a checkpoint file
    steps: int = 2000
    batch_size: int = 4
    objects_per_image: int = 8
    rounds: int = 3  # first prompt + corrective clicks
    box_fraction: float = 0.5  # share of objects whose first prompt is a box
    lr: float = 4e-4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    seed: int = 0
    device: str | None = "auto"
    precision: str = "auto"  # "bf16": products in bfloat16, weights and Adam state float32; "auto": bf16 where native
    overwrite: bool = False
    resume: bool = False  # require an unfinished run to continue
    restart: bool = False  # discard an unfinished run instead of continuing it
    half: bool = False  # store the final weights in float16
    position_scale: float = 1.0  # spread of the random Fourier frequencies of a new model's position code
    # Share of the run, at its end, whose loss compares masks at the input size
    # (see interactive_loss); the rest compares at the decoder's low resolution.
    # Off by default: at 1024 px (the official models) the upsampled masks of a
    # step take 16x the memory of the low-resolution ones.
    full_size_loss: float = 0.0
    save_every: int = 50
    log_every: int = 10
    # Share of a folder's labelled images held out from training and scored
    # before and after it (see .held_out); 0: train on all of them.
    held_out: float = 0.0
    report: str | Path | None = None  # JSON file of the held-out scores, written at the end
    replay: float = 0.0  # share of the samples drawn from generated nuclei (see .replay)
    # Share of the generated samples (``--data generated``, or those of --replay) drawn crowded: small nuclei
    # pressed against brighter ones (see .data.CROWDED_TOUCHING); 0 keeps the ordinary draw.
    crowded: float = 0.0


@dataclass
class TrainResult:
    path: Path
    config: SamConfig
    steps: int
    seconds: float
    last_loss: float
    last_miou: float


def _check_options(o: TrainOptions) -> None:
    def positive_int(name):
        v = getattr(o, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {v!r}")

    for name in ("steps", "batch_size", "objects_per_image", "rounds", "save_every", "log_every"):
        positive_int(name)
    if not (isinstance(o.lr, (int, float)) and math.isfinite(o.lr) and o.lr > 0):
        raise ValueError(f"--lr must be a positive number, got {o.lr!r}")
    if not (isinstance(o.position_scale, (int, float)) and math.isfinite(o.position_scale) and o.position_scale > 0):
        raise ValueError(f"--position-scale must be a positive number, got {o.position_scale!r}")
    if not (isinstance(o.full_size_loss, (int, float)) and 0 <= o.full_size_loss <= 1):
        raise ValueError(f"--full-size-loss must be a fraction of the steps in [0, 1], got {o.full_size_loss!r}")
    if not 0 <= o.box_fraction <= 1:
        raise ValueError(f"box_fraction must lie in [0, 1], got {o.box_fraction}")
    if o.precision not in TRAINING_PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(TRAINING_PRECISIONS)}, got {o.precision!r}")
    if not (isinstance(o.held_out, (int, float)) and not isinstance(o.held_out, bool) and 0 <= o.held_out < 1):
        raise ValueError(f"--held-out must be a share of the labelled images in [0, 1) (0: none), got {o.held_out!r}")
    if not (isinstance(o.replay, (int, float)) and not isinstance(o.replay, bool) and 0 <= o.replay < 1):
        raise ValueError(f"--replay must be a share of the samples in [0, 1) (0: none), got {o.replay!r}")
    if not (isinstance(o.crowded, (int, float)) and not isinstance(o.crowded, bool) and 0 <= o.crowded <= 1):
        raise ValueError(f"--crowded must be a share of the generated samples in [0, 1] (0: none), got {o.crowded!r}")
    if o.crowded and not (o.data == "generated" or o.replay):
        raise ValueError("--crowded changes generated nuclei: use it with --data generated or with --replay")
    if o.resume and o.restart:
        raise ValueError("--resume and --restart contradict each other; pass one of them")



def learning_rate(step: int, total: int, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up, then a cosine decay to 5 % of the peak."""
    warmup = max(1, int(total * warmup_fraction))
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # Norms, biases, embeddings of positions and tokens are not shrunk.
        if p.ndim < 2 or "pos_embed" in name or "rel_pos" in name or name.endswith("_token.weight"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]



# ---------------------------------------------------------------- the run
def _computing_in(dtype: torch.dtype, device: torch.device):
    """Autocast for bf16 training: matrix products in bf16, weights, gradients and Adam state in float32."""
    if dtype != torch.bfloat16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def train(options: TrainOptions, log=print) -> TrainResult:
    """Train (or continue training) a SAM model; see :class:`TrainOptions`."""
    o = options
    _check_options(o)
    out = Path(o.out).expanduser()
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the file name of the model to write (e.g. model.pt)")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: the folder {out.parent} does not exist")
    if out.exists() and not o.overwrite:
        raise ValueError(f"{out} exists already; pass --overwrite to replace it or choose another --out")
    checkpoints.check_writable_folder(out.parent)
    partial = checkpoints.partial_path(out)
    if o.resume and not partial.exists():
        raise ValueError(f"--resume: there is no unfinished run to continue ({partial} does not exist)")
    if o.restart and partial.exists():
        partial.unlink()

    device = pick_device(o.device)
    if device.type == "cpu":
        keep_freed_memory()
    compute_dtype = pick_precision(o.precision, device)
    report = check_report_path(o.report) if o.report is not None else None
    source = open_source(o.data, crowded=o.crowded)
    held = HeldOut(source, o.held_out) if o.held_out else None
    if held is not None:
        source = held.training_source
    if o.replay:
        source = MixedSource(source, o.replay, generated=GeneratedSource(crowded=o.crowded))
    resumed = None
    if partial.exists():
        resumed = checkpoints.load_training_state(partial)
        cfg = checkpoints.config_from_dict(resumed["config"])
        if o.size is not None and not same_architecture(cfg, training_config(o.size)):
            raise ValueError(
                f"the unfinished run {partial} trains a {describe_config(cfg)} model, not --size {o.size}; "
                "pass --restart to start a new run"
            )
        model = build_sam(cfg)
        load_weights(model, resumed["model"], source=partial)
        origin = f"unfinished run {partial}"
    else:
        torch.manual_seed(o.seed)  # random initial weights are part of the seeded run
        model, origin = initial_model(o.init, o.size)
        cfg = model.config
        if o.init is None or str(o.init).lower() == "none":
            # Higher frequencies let a small model place clicks precisely on small objects; the
            # matrix is saved with the weights, so inference uses the very same code.
            with torch.no_grad():
                model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.mul_(o.position_scale)
    # Room for the resumable state, checked now rather than when the first save fails.
    checkpoints.check_writable_folder(out.parent, needed_bytes=checkpoints.run_bytes(model))
    base_settings = recommended_settings(name=str(o.init)) if o.init not in (None, "none") else {}
    if held is not None:
        # Scored as the run started from it, also when this session resumes a run.
        base = model if resumed is None else _base_model(o)
        held.evaluate("before", base.to(device), base_settings, log)
    model.to(device).train()

    optimizer = torch.optim.AdamW(_param_groups(model, o.weight_decay), lr=o.lr, betas=(0.9, 0.999))
    rng = np.random.default_rng(o.seed)
    start = 0
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        start = int(resumed["step"])
        torch.set_rng_state(resumed["torch_rng"])
        rng.bit_generator.state = resumed["numpy_rng"]
        if start > o.steps:
            raise ValueError(
                f"the unfinished run {partial} is at step {start} already; ask for more --steps or pass --restart"
            )
        log(f"resuming {partial} at step {start} of {o.steps}")
    log(
        f"training {describe_config(cfg)} from {origin} on {source.description}, device {device}"
        + (", computing in bf16" if compute_dtype == torch.bfloat16 else "")
    )
    run = _Run(o, model, optimizer, cfg, rng, partial, start)
    run.held, run.base_settings = held, base_settings
    try:
        with stop_requests_interrupt():
            run.steps(source, compute_dtype, device, log)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM through stop_requests_interrupt
        with stop_requests_held():
            run.save_state()
        how = "stopped by SIGTERM" if isinstance(err, Terminated) else "interrupted"
        raise TrainingInterrupted(
            f"{how} after step {run.done}; the run was saved to {partial}: run the same command again to continue",
            run.done,
            partial,
            signal_number=getattr(err, "signal_number", signal.SIGINT),
        ) from None
    result = run.write_model(out, log)
    if report is not None:
        write_report(report, held, o.steps, result.seconds / 60)
        log(f"wrote the report {report}")
    return result


def _base_model(o: TrainOptions):
    """The model a resumed run started from, rebuilt to score it."""
    torch.manual_seed(o.seed)
    return initial_model(o.init, o.size)[0]


class _Run:
    """The state of one training run between steps, and how it is saved."""

    def __init__(self, o: TrainOptions, model, optimizer, cfg: SamConfig, rng, partial: Path, start: int):
        self.o, self.model, self.optimizer, self.cfg, self.rng = o, model, optimizer, cfg, rng
        self.partial, self.start = partial, start
        self.done = start  # steps whose update is in the weights
        self.loss_avg = self.miou_avg = self.miou1_avg = None
        self.t0 = time.perf_counter()
        self.held, self.base_settings = None, {}

    def save_state(self) -> None:
        o = self.o
        run_options = {"data": str(o.data), "seed": o.seed, "batch_size": o.batch_size, "steps": o.steps}
        checkpoints.save_training_state(
            self.partial, model=self.model, optimizer=self.optimizer, step=self.done, config=self.cfg,
            options=run_options, numpy_rng=self.rng,
        )

    def steps(self, source, compute_dtype: torch.dtype, device: torch.device, log) -> None:
        o, model, cfg, rng, optimizer = self.o, self.model, self.cfg, self.rng, self.optimizer
        low_res_size = model.prompt_encoder.mask_input_size[0]
        full_size_from = o.steps - round(o.steps * o.full_size_loss)
        for step in range(self.start, o.steps):
            lr = learning_rate(step, o.steps, o.lr, o.warmup_fraction)
            if step == full_size_from or (step == self.start and step > full_size_from):
                log(f"from step {step + 1}: the loss compares masks at the input size ({cfg.image_size} px)")
            for group in optimizer.param_groups:
                group["lr"] = lr
            pairs = [draw_prepared(source, o.seed, step, b, cfg.image_size, low_res_size) for b in range(o.batch_size)]
            image_index, masks, low_res = select_objects(pairs, o.objects_per_image, rng)
            with _computing_in(compute_dtype, device):
                embeddings = model.image_encoder(encoder_batch(pairs, model))
                loss, miou1, miou = interactive_loss(
                    model, embeddings[torch.from_numpy(image_index).to(device)], masks, low_res, o.rounds, o.box_fraction, rng,
                    loss_at_input_size=step >= full_size_from,
                )
            value = loss.item()
            if not math.isfinite(value):
                raise ValueError(f"the loss became {value} at step {step + 1}; lower --lr and start again (--restart)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            self.done = done = step + 1
            smooth = 0.9 if self.loss_avg is not None else 0.0
            self.loss_avg = smooth * (self.loss_avg or 0.0) + (1 - smooth) * value
            self.miou_avg = smooth * (self.miou_avg or 0.0) + (1 - smooth) * miou
            self.miou1_avg = smooth * (self.miou1_avg or 0.0) + (1 - smooth) * miou1
            if done % o.log_every == 0 or done == o.steps:
                rate = (done - self.start) / (time.perf_counter() - self.t0)
                log(
                    f"step {done}/{o.steps}  loss {self.loss_avg:.4f}  mIoU {self.miou1_avg:.3f} first prompt, "
                    f"{self.miou_avg:.3f} after {o.rounds} round(s)  lr {lr:.2e}  {rate:.2f} it/s  "
                    f"ETA {_format_eta((o.steps - done) / rate)}"
                )
            if done % o.save_every == 0 and done < o.steps:
                self.save_state()

    def write_model(self, out: Path, log) -> TrainResult:
        o, model, cfg = self.o, self.model, self.cfg
        model.eval()
        weights = checkpoints.model_weights(model, half=o.half)
        # The file must describe its own architecture: load_model infers it from the weights.
        if not same_architecture(config_from_state_dict(weights), cfg):
            raise ValueError(f"internal error: the weights of {describe_config(cfg)} do not describe that architecture")
        if out.exists() and not o.overwrite:  # appeared while we trained
            self.save_state()
            raise ValueError(f"{out} appeared during training; the run is kept in {self.partial}, pass --overwrite")
        seconds = time.perf_counter() - self.t0  # training time; scoring the held-out images follows
        # A fine-tuned model starts from its base's automatic settings (segment everything),
        # or those tuned for it on the held-out images, kept in the file so the SAM
        # Everything dock and `segment` find them; with them, where the model came from.
        settings = self.base_settings
        if self.held is not None:
            settings = self.held.evaluate("after", model, settings, log)
        content = with_auto_settings(weights, settings)
        content["provenance"] = provenance(o, self.held.names if self.held is not None else [])
        try:
            checkpoints.save_atomic(content, out)
        except OSError as err:
            # Keep the finished run: the same command then only writes the model.
            try:
                self.save_state()
            except OSError:
                raise err from None
            raise OSError(
                err.errno, f"{err}; the trained run is kept in {self.partial}: make room (or fix the folder) and run "
                "the same command again to write the model"
            ) from None
        if self.partial.exists():
            self.partial.unlink()
        tuned = self.held is not None
        log(f"saved {out} after {o.steps} steps ({_format_eta(seconds)} of training this session)"
            + ("; automatic settings tuned on the held-out images recorded in it" if tuned
               else f"; automatic settings of {o.init} recorded in it" if settings else ""))
        nan = float("nan")
        return TrainResult(out, cfg, o.steps, seconds, self.loss_avg if self.loss_avg is not None else nan,
                           self.miou_avg if self.miou_avg is not None else nan)
