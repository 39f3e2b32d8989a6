"""The bf16 ViT's global attention computed in float32 where this machine measured that faster."""

import pytest
import torch

from napari_sam.model import attention_choice as ac
from napari_sam.model.build import build_sam
from napari_sam.model.image_encoder import _SDPA_MAX_TOKENS_CPU_BF16, Attention
from napari_sam.model.predictor import SamPredictor

real_measurement = ac.measure_global_attention  # the tests' conftest replaces it once the session starts

SIDE = 33  # 1089 tokens: above _SDPA_MAX_TOKENS_CPU_BF16, so it is a "global" attention
assert SIDE * SIDE > _SDPA_MAX_TOKENS_CPU_BF16


def _global_attention(seed=0, dim=32, heads=2):
    gen = torch.Generator().manual_seed(seed)
    att = Attention(dim, heads, (SIDE, SIDE)).eval().requires_grad_(False)
    with torch.no_grad():
        att.rel_pos_h.copy_(torch.randn(att.rel_pos_h.shape, generator=gen) * 0.3)
        att.rel_pos_w.copy_(torch.randn(att.rel_pos_w.shape, generator=gen) * 0.3)
    qkv = torch.randn(1, SIDE, SIDE, 3 * dim, generator=gen).bfloat16()
    return att, qkv


def test_the_float32_path_is_float32_attention_of_the_bf16_numbers():
    att, qkv = _global_attention()
    bf16 = ac._in_dtype(att, torch.bfloat16, fp32_global=True)
    # The float32 module with the bf16 module's (rounded) tables, fed the bf16 inputs.
    rounded = ac._in_dtype(bf16, torch.float32, fp32_global=False)
    plain = ac._in_dtype(att, torch.bfloat16, fp32_global=False)
    with torch.inference_mode():
        got = bf16.attend(qkv)
        expected = rounded.attend(qkv.float()).bfloat16()
        folded = plain.attend(qkv)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, expected)
    assert not torch.equal(got, folded)  # the flag changes the path taken


def test_windows_and_float32_modules_ignore_the_flag():
    att, qkv = _global_attention()
    small = Attention(32, 2, (7, 7)).eval().requires_grad_(False).bfloat16()
    x = torch.randn(2, 7, 7, 96).bfloat16()
    fp32 = ac._in_dtype(att, torch.float32, fp32_global=False)
    flagged = ac._in_dtype(att, torch.float32, fp32_global=True)
    with torch.inference_mode():
        before = small.attend(x)
        small.float32_global_attention = True
        assert torch.equal(small.attend(x), before)
        assert torch.equal(fp32.attend(qkv.float()), flagged.attend(qkv.float()))


class Counting:
    def __init__(self, times):
        self.times, self.calls = times, 0

    def __call__(self):
        self.calls += 1
        return dict(self.times)


@pytest.mark.parametrize("times, pays", [({"bf16": 0.9, "fp32": 0.55}, True), ({"bf16": 0.48, "fp32": 0.9}, False)])
def test_the_choice_follows_the_measurement_and_is_measured_once(tmp_path, times, pays):
    measure = Counting(times)
    path = tmp_path / "attention.json"
    assert ac.float32_global_attention_pays(measure, path) is pays
    assert ac.float32_global_attention_pays(measure, path) is pays
    assert measure.calls == 1


def test_a_broken_measurement_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="attention measurement"):
        ac.float32_global_attention_pays(lambda: {"bf16": 0.0, "fp32": 1.0}, tmp_path / "a.json")


def test_the_real_measurement_times_both_ways():
    times = real_measurement(tokens_side=SIDE, heads=2, head_dim=16)
    assert set(times) == {"bf16", "fp32"} and all(t > 0 for t in times.values())


def test_where_bf16_is_emulated_float32_attention_is_taken_unmeasured(monkeypatch):
    monkeypatch.setattr("napari_sam.model.predictor.cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr("napari_sam.model.predictor.float32_global_attention_pays", lambda: pytest.fail("measured"))
    predictor = SamPredictor(build_sam(_tiny_vit_config()), device="cpu", precision="bf16")
    assert all(m.float32_global_attention for m in predictor._encoder.modules() if isinstance(m, Attention))


@pytest.mark.parametrize("pays", [True, False])
def test_a_bf16_predictor_takes_the_measured_way_and_leaves_the_model_alone(monkeypatch, pays):
    monkeypatch.setattr("napari_sam.model.predictor.cpu_has_fast_bf16", lambda: True)
    monkeypatch.setattr("napari_sam.model.predictor.float32_global_attention_pays", lambda: pays)
    model = build_sam(_tiny_vit_config())
    predictor = SamPredictor(model, device="cpu", precision="bf16")
    flags = [m.float32_global_attention for m in predictor._encoder.modules() if isinstance(m, Attention)]
    assert flags and all(f is pays for f in flags)
    assert ("global attention in float32" in predictor.precision_reason) is pays
    assert not any(m.float32_global_attention for m in model.image_encoder.modules() if isinstance(m, Attention))
    fp32 = SamPredictor(model, device="cpu", precision="fp32")
    assert not any(m.float32_global_attention for m in fp32._encoder.modules() if isinstance(m, Attention))


def _tiny_vit_config():
    from napari_sam.model.build import tiny_config

    return tiny_config(image_size=128)
