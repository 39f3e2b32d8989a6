"""Choosing the device and the encoder precision."""

import pytest
import torch

from napari_sam.model import device as device_module
from napari_sam.model.device import PRECISIONS, TRAINING_PRECISIONS, cpu_has_fast_bf16, pick_device, pick_precision

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error given when there is no GPU")
needs_no_mps = pytest.mark.skipif(
    bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()), reason="Apple GPU present"
)
CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.fixture()
def no_precision_override(monkeypatch):
    monkeypatch.delenv("NAPARI_SAM_PRECISION", raising=False)


# ------------------------------------------------------------------- devices
@pytest.mark.parametrize("name", ["cpu", torch.device("cpu"), "cpu:0"])
def test_cpu(name):
    assert pick_device(name).type == "cpu"


@pytest.mark.parametrize("name", [None, "auto", "AUTO", " auto "])
def test_auto_prefers_cuda_then_mps_then_cpu(name, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device(name) == CPU
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device(name) == MPS
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(name) == CUDA


@needs_no_cuda
@needs_no_mps
def test_auto_is_the_cpu_on_this_machine():
    assert pick_device("auto") == CPU
    assert pick_device() == CPU


@needs_no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1", torch.device("cuda", 0)])
def test_cuda_without_a_gpu_is_refused(name):
    with pytest.raises(ValueError, match="CUDA"):
        pick_device(name)


@needs_no_mps
def test_mps_without_apple_gpu_is_refused():
    with pytest.raises(ValueError, match="mps"):
        pick_device("mps")


@pytest.mark.parametrize("name", ["gpu0", "banana", "", "cuda:x", "cpu cpu"])
def test_nonsense_device_is_refused(name):
    with pytest.raises(ValueError, match="not a device name"):
        pick_device(name)


def test_cuda_is_accepted_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("cuda:1") == torch.device("cuda", 1)


# ---------------------------------------------------------------- precisions
def test_explicit_precisions(no_precision_override):
    for dev in (CPU, CUDA):
        assert pick_precision("fp32", dev) == torch.float32
        assert pick_precision("bf16", dev) == torch.bfloat16
    assert pick_precision("fp32", MPS) == torch.float32


def test_bf16_on_mps_is_refused():
    with pytest.raises(ValueError, match="MPS"):
        pick_precision("bf16", MPS)


@pytest.mark.parametrize("bad", ["fp16", "FP32", "float32", "", None, torch.float32, 16])
def test_unknown_precision_is_refused(bad):
    with pytest.raises(ValueError, match="precision"):
        pick_precision(bad, CPU)


def test_precisions_listed():
    assert set(PRECISIONS) == {"auto", "fp32", "bf16", "int8"}
    assert set(TRAINING_PRECISIONS) == {"auto", "fp32", "bf16"}


def test_training_refuses_int8():
    with pytest.raises(ValueError, match="int8 is for embedding images only"):
        pick_precision("int8", CPU)


@pytest.mark.parametrize("fast", [True, False])
def test_auto_on_cpu_follows_native_bf16_support(fast, monkeypatch, no_precision_override):
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: fast)
    assert pick_precision("auto", CPU) == (torch.bfloat16 if fast else torch.float32)


@pytest.mark.parametrize("supported", [True, False])
def test_auto_on_cuda_follows_gpu_bf16_support(supported, monkeypatch, no_precision_override):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: supported)
    assert pick_precision("auto", CUDA) == (torch.bfloat16 if supported else torch.float32)


def test_auto_on_mps_is_float32(no_precision_override):
    assert pick_precision("auto", MPS) == torch.float32


@pytest.mark.parametrize("value, expected", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_environment_overrides_auto_only(value, expected, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_PRECISION", value)
    monkeypatch.setattr(device_module, "cpu_has_fast_bf16", lambda: value == "fp32")  # the opposite of the override
    assert pick_precision("auto", CPU) == expected
    # An explicit choice wins over the environment.
    other = "bf16" if value == "fp32" else "fp32"
    assert pick_precision(other, CPU) != expected


def test_environment_bf16_on_mps_is_refused(monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_PRECISION", "bf16")
    with pytest.raises(ValueError, match="MPS"):
        pick_precision("auto", MPS)


# ------------------------------------------------------------- CPU detection
def _detect(monkeypatch, cpuinfo, mkldnn_says=True):
    """Run the (uncached) CPU check with a given /proc/cpuinfo and oneDNN answer."""

    class FakeFile:
        def __init__(self, *args, **kwargs):
            if cpuinfo is None:
                raise OSError("no /proc here")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return cpuinfo

    monkeypatch.setattr(device_module, "open", FakeFile, raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: mkldnn_says, raising=False)
    return cpu_has_fast_bf16.__wrapped__()


@pytest.mark.parametrize(
    "cpuinfo, mkldnn_says, expected",
    [
        ("flags : fpu sse avx2 avx512f avx512_bf16", True, True),
        ("flags : fpu sse avx2 amx_bf16 amx_tile", True, True),
        ("flags : fpu sse avx2 avx512f", True, False),  # AVX-512 without its bf16 extension: emulated, slow
        ("flags : fpu sse avx2 avx512_bf16", False, False),  # oneDNN cannot use it
        (None, True, False),  # no /proc/cpuinfo (macOS, Windows)
    ],
)
def test_cpu_bf16_detection(monkeypatch, cpuinfo, mkldnn_says, expected):
    assert _detect(monkeypatch, cpuinfo, mkldnn_says) is expected


def test_cpu_bf16_detection_answers_a_bool_here():
    assert isinstance(cpu_has_fast_bf16(), bool)
