"""int8 linear layers and the int8 predictor: close to float32, never touching the user's model."""

import warnings

import numpy as np
import pytest
import torch

from helpers import randomize_, rel_err, structured_rgb
from napari_sam.model import int8 as int8_module
from napari_sam.model.build import build_sam, tiny_config
from napari_sam.model.embedding import ImageEmbedding
from napari_sam.model.int8 import Int8Linear, int8_copy
from napari_sam.model.predictor import SamPredictor
from napari_sam.volume.store import EmbeddingStore, SliceKey

pytestmark = pytest.mark.skipif(not int8_module.cpu_has_int8_kernels(), reason="no int8 kernels in this PyTorch")


def tiny(encoder="vit", size=96, seed=0):
    # 96 px: a 6x6 token grid in 4x4 windows, so the ViT pads its windows.
    torch.manual_seed(seed)
    return randomize_(build_sam(tiny_config(size, encoder=encoder)), seed=seed).eval()


@pytest.mark.parametrize("shape", [(7, 48), (2, 5, 48), (2, 3, 4, 48)])
def test_int8_linear_is_close_to_float(shape):
    layer = torch.nn.Linear(48, 40)
    x = torch.randn(*shape)
    with torch.inference_mode():
        expected, got = layer(x), Int8Linear(layer)(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert rel_err(got, expected) < 2e-2
    assert rel_err(got, expected) > 0  # it really computed in integers


@pytest.mark.parametrize("reduce_range", [False, True])
def test_both_input_ranges_are_close(reduce_range):
    from napari_sam.model.int8 import cpu_has_vnni

    if not reduce_range and not cpu_has_vnni():
        # Without VNNI the full 8-bit range overflows the kernels' 16-bit pair sums (why reduce_range exists).
        pytest.skip("full-range int8 inputs need VNNI")
    layer = torch.nn.Linear(64, 64)
    x = torch.randn(16, 64) * 5
    with torch.inference_mode():
        assert rel_err(Int8Linear(layer, reduce_range=reduce_range)(x), layer(x)) < 3e-2


def test_int8_linear_refuses_bf16_input():
    with pytest.raises(TypeError, match="float32 CPU input"):
        Int8Linear(torch.nn.Linear(4, 4))(torch.randn(2, 4, dtype=torch.bfloat16))


def test_quantising_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Int8Linear(torch.nn.Linear(8, 8))


@pytest.mark.parametrize("encoder", ["vit", "tiny_vit"])
def test_int8_copy_leaves_the_model_alone(encoder):
    model = tiny(encoder)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantised = int8_copy(model.image_encoder)
    assert not any(isinstance(m, torch.nn.Linear) for m in quantised.modules())
    assert any(isinstance(m, torch.nn.Linear) for m in model.image_encoder.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    x = torch.randn(1, 3, 96, 96)
    with torch.inference_mode():
        assert rel_err(quantised(x), model.image_encoder(x)) < 5e-2


def test_int8_is_refused_without_int8_kernels(monkeypatch):
    monkeypatch.setattr(int8_module, "cpu_has_int8_kernels", lambda: False)
    with pytest.raises(ValueError, match="no fast int8 kernels"):
        int8_copy(tiny().image_encoder)
    with pytest.raises(ValueError, match="no fast int8 kernels"):
        SamPredictor(tiny(), device="cpu", precision="int8")


def test_int8_predictor_embeds_and_decodes_like_fp32():
    model = tiny()
    image = structured_rgb(40, 56, seed=2)
    fp32 = SamPredictor(model, device="cpu", precision="fp32")
    q = SamPredictor(model, device="cpu", precision="int8")
    assert q.embedding_precision == "int8" and q.precision_reason == "int8 (as chosen)"
    emb = q.set_image(image)
    assert emb.precision == "int8" and emb.features.dtype == torch.float32
    assert rel_err(emb.features, fp32.set_image(image).features) < 5e-2
    masks_q, iou_q, _ = q.predict(point_coords=[[20, 15]], point_labels=[1])
    masks_f, iou_f, _ = fp32.predict(point_coords=[[20, 15]], point_labels=[1])
    assert masks_q.shape == masks_f.shape == (3, 40, 56)
    assert (masks_q == masks_f).mean() > 0.9
    assert np.abs(iou_q - iou_f).max() < 0.1
    # The decoder stays float32 under int8, and so do the user's weights.
    assert q._decoder is model.mask_decoder
    assert model.image_encoder.blocks[0].attn.qkv.weight.dtype == torch.float32


def test_int8_on_a_gpu_is_refused():
    from napari_sam.model.precision_choice import choose_precision

    with pytest.raises(ValueError, match="CPU only"):
        choose_precision("int8", torch.device("cuda"), "ImageEncoderViT")


def test_an_int8_embedding_is_its_own_cache_entry(tmp_path):
    model_id, rule = "tiny:sha256:" + "ab" * 32, "v1:linear:given:0.0:1000.0"
    features = torch.randn(1, 32, 8, 8)
    store = EmbeddingStore(tmp_path)
    int8_key = SliceKey("f" * 32, model_id, rule, precision="int8")
    store.put(int8_key, ImageEmbedding(features, (100, 120), (107, 128), model_id, rule, precision="int8"))
    assert store.get(SliceKey("f" * 32, model_id, rule)) is None  # an fp32 request never gets it
    assert store.get(int8_key).precision == "int8"


@pytest.mark.parametrize("gelu, with_add", [(False, False), (True, False), (False, True), (True, True)])
def test_apply_linear_gives_an_int8_layer_the_same_extras(gelu, with_add):
    from napari_sam.model.fused import apply_linear

    layer = torch.nn.Linear(32, 24)
    x, add = torch.randn(3, 5, 32), torch.randn(3, 5, 24)
    q = Int8Linear(layer)
    with torch.inference_mode():
        expected = q(x) + (add if with_add else 0)
        expected = torch.nn.functional.gelu(expected) if gelu else expected
        got = apply_linear(q, x, gelu=gelu, add=add if with_add else None)
        float_result = apply_linear(layer, x, gelu=gelu, add=add if with_add else None)
    assert torch.allclose(got, expected, atol=1e-6)
    assert rel_err(got, float_result) < 3e-2
