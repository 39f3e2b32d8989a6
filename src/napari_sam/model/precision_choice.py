"""Which precision the image encoder runs in, and a one-line reason the user can read.

"auto" on the CPU is decided per machine. On first use we time one
vit_b-sized matrix product in float32, bf16 and int8 (about a second) and
keep the rates in the user's cache folder, keyed by the CPU model, its flags
and the PyTorch version: a shared home folder on a cluster holds one entry
per kind of node, and a new CPU (or PyTorch) is measured again. From those
rates we estimate each precision's encoder time and take the fastest one
whose quality passed (``QUALITY_PASSES``, from benchmarks/bench_int8.py):

* bf16 speeds up every product, so its gain is the measured bf16 rate;
* int8 speeds up the linear layers only, the rest stays float32 (Amdahl's
  law, with ``LINEAR_SHARE`` the share of float32's encoder time it acts on);
* a lower precision must gain at least ``MIN_GAIN`` over float32, and int8
  must beat bf16 by ``INT8_OVER_BF16`` (bf16 is the more accurate of the two).

GPUs: bf16 where the GPU has it, on Apple MPS float32; int8 is CPU only.
"""

import datetime
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .cpu_info import PRECISION_FLAGS, cpu_model_and_flags

logger = logging.getLogger(__name__)

#: What each precision may be picked for: its quality against float32 passed
#: masks >= 98 % of pixels identical, predicted IoU within 0.02 and the demo
#: model's one-click / box IoU within 0.01 (benchmarks/bench_int8.py; on a
#: 2-core EPYC, native and limited to AVX2, int8: masks 99.97-99.99 %
#: identical, IoU predictions within 0.0077, demo IoU within 0.0003; bf16:
#: 99.5-99.6 %, 0.0162, 0.001). The demo model is a ViT; vit_t was judged on
#: random weights only.
QUALITY_PASSES = {
    ("ImageEncoderViT", "bf16"): True,
    ("ImageEncoderViT", "int8"): True,
    ("TinyViT", "bf16"): True,
    ("TinyViT", "int8"): True,
}
#: The share of float32 encoder time int8 acts on, fitted to bench_int8's
#: timings on both machines (int8 against fp32, with int8 products 7.6x / 2.2x
#: float32's rate: vit_b 1.44x / 1.41x, vit_t 1.19x / 1.29x; the estimates
#: from these shares: 1.64x / 1.33x and 1.35x / 1.20x). Less than the linear layers'
#: share of the operations (98 % / 70 %): attention stays float32 (a third of
#: vit_b's time), and int8 adds passes for GELU, residuals and rounding the input.
LINEAR_SHARE = {"ImageEncoderViT": 0.45, "TinyViT": 0.3}
MIN_GAIN = 1.1
INT8_OVER_BF16 = 1.15

_CACHE_FILE = "machine_speed.json"
_CACHE_VERSION = 1
# Environment variables that limit the instruction sets PyTorch and oneDNN use.
_ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str  # "fp32", "bf16" or "int8"
    reason: str  # one line for the status bar


def machine_key() -> str:
    """Which machine a speed measurement belongs to: CPU model, relevant flags, PyTorch, ISA limits."""
    model, flags = cpu_model_and_flags()
    limits = [f"{v}={os.environ[v]}" for v in _ISA_LIMITS if os.environ.get(v)]
    parts = [model, " ".join(f for f in PRECISION_FLAGS if f in flags), f"torch {torch.__version__}", *limits]
    return " | ".join(parts)


def measure_speeds(tokens: int = 2048, width: int = 768, hidden: int = 3072, repeats: int = 3) -> dict[str, float]:
    """Matrix-product rates of this CPU in GOP/s per precision, from vit_b's first MLP layer.

    About half a second; the layer's size matters: smaller products measure
    the call overhead more than the arithmetic.
    """
    import time

    from .int8 import Int8Linear, cpu_has_int8_kernels

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, width, generator=gen)
    layer = torch.nn.Linear(width, hidden)
    ops = 2 * tokens * width * hidden
    layer_bf16, x_bf16 = torch.nn.Linear(width, hidden).to(torch.bfloat16), x.bfloat16()
    runs = {"fp32": lambda: layer(x), "bf16": lambda: layer_bf16(x_bf16), "int8": None}
    if cpu_has_int8_kernels():
        int8 = Int8Linear(layer)
        runs["int8"] = lambda: int8(x)
    times = {}
    with torch.inference_mode():
        for name, run in runs.items():
            if run is None:
                continue
            start = time.perf_counter()
            run()  # warms caches and the kernels' choice of code
            first = time.perf_counter() - start
            if "fp32" in times and first > 10 * times["fp32"]:
                times[name] = first  # emulated: more runs would only cost the user time
                continue
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                best = min(best, time.perf_counter() - start)
            times[name] = best
    return {name: ops / t / 1e9 for name, t in times.items()}


def _cache_path() -> Path:
    from .zoo import cache_dir

    return cache_dir() / _CACHE_FILE


def cached_speeds(measure=measure_speeds, path: Path | None = None) -> dict:
    """This machine's rates: from the cache when measured on this machine, else measured now and stored.

    Returns ``{"speeds": {...}, "measured": ISO date}``. An unreadable or
    foreign cache is never trusted: the machine is measured again.
    """
    return cached_measurement(_cache_path() if path is None else Path(path), measure, _valid_entry,
                              "the speed measurement")


def cached_measurement(path: Path, measure, valid, what: str) -> dict:
    """``{"speeds": measure(), "measured": date}`` for this machine (:func:`machine_key`), kept in ``path``.

    One file holds an entry per machine (a home folder shared by the nodes of
    a cluster); ``valid(entry)`` says whether a stored entry can be trusted.
    """
    key = machine_key()
    machines = {}
    try:
        content = json.loads(path.read_text())
        if isinstance(content, dict) and content.get("version") == _CACHE_VERSION:
            machines = content.get("machines", {}) if isinstance(content.get("machines"), dict) else {}
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as err:
        logger.info("ignoring the unreadable cache %s (%s); measuring again", path, err)
    entry = machines.get(key)
    if valid(entry):
        return entry
    entry = {"speeds": measure(), "measured": datetime.date.today().isoformat()}
    if not valid(entry):
        raise RuntimeError(f"{what} returned {entry['speeds']!r}, not what was expected")
    machines[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": _CACHE_VERSION, "machines": machines}, indent=1))
        os.replace(tmp, path)
    except OSError as err:  # a read-only home: measure again next time, but work now
        logger.info("could not store the measurement in %s: %s", path, err)
    return entry


def _valid_entry(entry) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("speeds"), dict):
        return False
    speeds = entry["speeds"]
    numbers = all(isinstance(v, (int, float)) and v > 0 for v in speeds.values())
    return numbers and "fp32" in speeds and "bf16" in speeds and set(speeds) <= {"fp32", "bf16", "int8"}


def choose_on_cpu(speeds: dict[str, float], encoder_kind: str, measured: str = "") -> PrecisionChoice:
    """The fastest precision whose quality passed, from measured rates (see the module text)."""
    share = LINEAR_SHARE.get(encoder_kind, 0.0)
    gains = {"fp32": 1.0}
    if QUALITY_PASSES.get((encoder_kind, "bf16")):
        gains["bf16"] = speeds["bf16"] / speeds["fp32"]
    if "int8" in speeds and QUALITY_PASSES.get((encoder_kind, "int8")):
        gains["int8"] = 1.0 / ((1 - share) + share * speeds["fp32"] / speeds["int8"])
    pick = "bf16" if gains.get("bf16", 0) >= MIN_GAIN else "fp32"
    needed = INT8_OVER_BF16 * gains["bf16"] if pick == "bf16" else MIN_GAIN
    if gains.get("int8", 0) >= needed:
        pick = "int8"
    rates = ", ".join(f"{name} {speeds[name] / speeds['fp32']:.2g}x" for name in ("bf16", "int8") if name in speeds)
    reason = f"{pick} (auto): products on this CPU ran {rates} float32's speed"
    if measured:
        reason += f" (measured {measured})"
    if "int8" in speeds and "int8" not in gains:
        reason += f"; int8 is not used for {encoder_kind} (quality)"
    return PrecisionChoice(pick, reason)


def choose_precision(precision: str, device: torch.device, encoder_kind: str, measure=None) -> PrecisionChoice:
    """Resolve "auto"/"fp32"/"bf16"/"int8" for an encoder on ``device``; a ValueError says what cannot run."""
    from .device import PRECISIONS
    from .int8 import cpu_has_int8_kernels

    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    source = "as chosen"
    if precision == "auto" and os.environ.get("NAPARI_SAM_PRECISION") in PRECISIONS[1:]:
        precision, source = os.environ["NAPARI_SAM_PRECISION"], "from NAPARI_SAM_PRECISION"
    if precision == "bf16" and device.type == "mps":
        raise ValueError("bf16 is not supported on Apple MPS here; use 'fp32' or 'auto'")
    if precision == "int8":
        if device.type != "cpu":
            raise ValueError(f"int8 runs on the CPU only, not on {device.type}; use 'bf16', 'fp32' or 'auto'")
        if not cpu_has_int8_kernels():
            raise ValueError(
                "int8 was asked for, but this CPU or PyTorch build has no fast int8 kernels (it would be much "
                "slower than float32); use precision 'fp32' or 'auto'"
            )
    if precision != "auto":
        return PrecisionChoice(precision, f"{precision} ({source})")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", "bf16 (auto): this GPU computes bf16 natively")
        return PrecisionChoice("fp32", "fp32 (auto): this GPU has no native bf16")
    if device.type != "cpu":
        return PrecisionChoice("fp32", f"fp32 (auto): the safe choice on {device.type}")
    entry = cached_speeds(measure or measure_speeds)
    return choose_on_cpu(entry["speeds"], encoder_kind, entry.get("measured", ""))


def encoder_kind(model) -> str:
    """The image encoder's class name, the key of QUALITY_PASSES and LINEAR_SHARE."""
    return type(model.image_encoder).__name__

