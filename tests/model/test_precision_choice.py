"""What "auto" picks per machine, from measured rates (fakes here: no timing), and the cache of them."""

import json

import pytest
import torch

from napari_sam.model import precision_choice as pc
from napari_sam.model.precision_choice import cached_speeds, choose_on_cpu, choose_precision

VIT, TINY = "ImageEncoderViT", "TinyViT"
CPU = torch.device("cpu")
# GOP/s as measured on a 2-core AMD EPYC: natively (AVX512-BF16, VNNI) and limited to AVX2.
NATIVE = {"fp32": 188.0, "bf16": 737.0, "int8": 1000.0}
AVX2 = {"fp32": 80.0, "bf16": 22.0, "int8": 151.0}


@pytest.fixture()
def no_override(monkeypatch):
    monkeypatch.delenv("NAPARI_SAM_PRECISION", raising=False)


class CountingMeasure:
    def __init__(self, rates):
        self.rates, self.calls = rates, 0

    def __call__(self):
        self.calls += 1
        return dict(self.rates)


# ------------------------------------------------------------------ the rule
def test_native_bf16_wins_where_bf16_is_native():
    assert choose_on_cpu(NATIVE, VIT).precision == "bf16"


def test_int8_wins_on_an_avx2_cpu_for_the_vit():
    choice = choose_on_cpu(AVX2, VIT, measured="2026-12-02")
    assert choice.precision == "int8"
    assert "bf16 0.28x" in choice.reason and "int8 1.9x" in choice.reason and "2026-12-02" in choice.reason


def test_tiny_vit_takes_int8_on_an_avx2_cpu_unless_its_quality_failed(monkeypatch):
    assert choose_on_cpu(AVX2, TINY).precision == "int8"
    monkeypatch.setitem(pc.QUALITY_PASSES, (TINY, "int8"), False)
    choice = choose_on_cpu(AVX2, TINY)
    assert choice.precision == "fp32" and "int8 is not used for TinyViT" in choice.reason


def test_a_precision_that_failed_quality_is_never_picked(monkeypatch):
    monkeypatch.setitem(pc.QUALITY_PASSES, (VIT, "int8"), False)
    assert choose_on_cpu(AVX2, VIT).precision == "fp32"
    monkeypatch.setitem(pc.QUALITY_PASSES, (VIT, "bf16"), False)
    assert choose_on_cpu(NATIVE, VIT).precision == "fp32"


def test_small_gains_keep_float32():
    assert choose_on_cpu({"fp32": 100.0, "bf16": 105.0, "int8": 115.0}, VIT).precision == "fp32"


def test_int8_must_clearly_beat_bf16():
    # int8 products 6x float32 give about 1.6x for the encoder (a part of it only): bf16's 3x stays.
    assert choose_on_cpu({"fp32": 100.0, "bf16": 300.0, "int8": 600.0}, VIT).precision == "bf16"
    assert choose_on_cpu({"fp32": 100.0, "bf16": 115.0, "int8": 600.0}, VIT).precision == "int8"


def test_without_int8_kernels_int8_is_not_considered():
    assert choose_on_cpu({"fp32": 100.0, "bf16": 20.0}, VIT).precision == "fp32"


# ---------------------------------------------------------------- the cache
def test_measured_once_per_machine(tmp_path):
    measure, path = CountingMeasure(AVX2), tmp_path / "speed.json"
    first = cached_speeds(measure, path)
    again = cached_speeds(measure, path)
    assert measure.calls == 1 and first == again and first["speeds"] == AVX2


def test_another_cpu_is_measured_again_and_both_are_kept(tmp_path, monkeypatch):
    path = tmp_path / "speed.json"
    cached_speeds(CountingMeasure(AVX2), path)
    monkeypatch.setattr(pc, "machine_key", lambda: "another CPU | avx2 | torch 9")
    other = CountingMeasure(NATIVE)
    assert cached_speeds(other, path)["speeds"] == NATIVE and other.calls == 1
    assert len(json.loads(path.read_text())["machines"]) == 2


@pytest.mark.parametrize("content", ["not json {", '{"version": 1, "machines": {"x": 1}}', "[]",
                                     '{"version": 0, "machines": {}}'])
def test_a_damaged_or_old_cache_is_measured_again(tmp_path, content):
    path = tmp_path / "speed.json"
    path.write_text(content)
    measure = CountingMeasure(AVX2)
    assert cached_speeds(measure, path)["speeds"] == AVX2 and measure.calls == 1
    assert cached_speeds(measure, path)["speeds"] == AVX2 and measure.calls == 1  # and now stored


def test_a_cached_entry_with_bad_rates_is_measured_again(tmp_path):
    path = tmp_path / "speed.json"
    entry = {"speeds": {"fp32": -1, "bf16": 3}, "measured": "x"}
    path.write_text(json.dumps({"version": 1, "machines": {pc.machine_key(): entry}}))
    measure = CountingMeasure(AVX2)
    assert cached_speeds(measure, path)["speeds"] == AVX2 and measure.calls == 1


def test_an_unwritable_cache_still_gives_a_choice(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cached_speeds(CountingMeasure(AVX2), blocker / "sub" / "speed.json")["speeds"] == AVX2


def test_a_broken_measurement_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="speed measurement"):
        cached_speeds(lambda: {"fp32": 0.0}, tmp_path / "speed.json")


def test_instruction_set_limits_are_part_of_the_machine(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    plain = pc.machine_key()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert pc.machine_key() != plain and "ONEDNN_MAX_CPU_ISA=AVX2" in pc.machine_key()
    assert f"torch {torch.__version__}" in plain


# ------------------------------------------------------------ choose_precision
def test_auto_on_the_cpu_uses_the_measurement(tmp_path, monkeypatch, no_override):
    monkeypatch.setattr(pc, "_cache_path", lambda: tmp_path / "speed.json")
    choice = choose_precision("auto", CPU, VIT, measure=CountingMeasure(AVX2))
    assert choice.precision == "int8" and choice.reason.startswith("int8 (auto)")


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_an_explicit_precision_is_kept(precision, no_override):
    assert choose_precision(precision, CPU, VIT).reason == f"{precision} (as chosen)"


def test_the_environment_overrides_auto(monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_PRECISION", "int8")
    choice = choose_precision("auto", CPU, VIT, measure=lambda: pytest.fail("measured"))
    assert choice.precision == "int8" and "NAPARI_SAM_PRECISION" in choice.reason


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda(supported, expected, monkeypatch, no_override):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert choose_precision("auto", torch.device("cuda"), VIT).precision == expected


@pytest.mark.parametrize("precision, device, message", [
    ("int8", "mps", "CPU only"), ("bf16", "mps", "MPS"), ("fp16", "cpu", "not one of"), ("", "cpu", "not one of"),
])
def test_what_cannot_run_is_refused(precision, device, message):
    with pytest.raises(ValueError, match=message):
        choose_precision(precision, torch.device(device), VIT)
