"""TinyViT (MobileSAM's image encoder): checkpoint compatibility and parity with the reference."""

import copy

import pytest
import reference
import torch

import napari_sam.model.fused as fused_ops
import napari_sam.model.tiny_vit as tiny_vit
import napari_sam.model.tiny_vit_attention as tiny_vit_attention
import napari_sam.model.tiny_vit_conv as tiny_vit_conv
from napari_sam.model.tiny_vit import TinyViT, image_to_windows, relative_offset_index, windows_to_image

SMALL = dict(img_size=256, embed_dims=(16, 32, 40, 80), depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4))


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).norm() / expected.norm()).item()


def random_state_dict(template: dict, seed: int) -> dict:
    """Random values for every float entry, BatchNorm statistics and biases included.

    Scales keep activations of order one through the network, so that the
    comparison exercises every weight instead of a saturated or vanishing path.
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in template.items():
        if not value.is_floating_point():
            out[key] = value.clone()
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=gen) + 0.5
        elif value.ndim >= 2:
            fan_in = value[0].numel()
            out[key] = torch.randn(value.shape, generator=gen) / fan_in**0.5
        elif key.endswith("weight"):  # norm scales
            out[key] = 1.0 + 0.1 * torch.randn(value.shape, generator=gen)
        else:  # biases, running means
            out[key] = 0.1 * torch.randn(value.shape, generator=gen)
    return out


@pytest.fixture(scope="module")
def reference_sam():
    return reference.mobile_sam().sam_model_registry["vit_t"]()


@pytest.fixture(scope="module")
def random_weights(reference_sam):
    return random_state_dict(reference_sam.image_encoder.state_dict(), seed=0)


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def ours_fp32(random_weights):
    model = TinyViT()
    model.load_state_dict(random_weights, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def ours_fp32_output(ours_fp32, image):
    with torch.inference_mode():
        return ours_fp32(image)


def test_state_dict_keys_and_shapes_match_reference(reference_sam):
    expected = reference_sam.image_encoder.state_dict()
    ours = TinyViT().state_dict()
    assert list(ours) == list(expected)
    for key, value in expected.items():
        assert ours[key].shape == value.shape, key
        assert ours[key].dtype == value.dtype, key


def test_index_buffers_are_not_saved_like_reference(reference_sam):
    ref_enc = reference_sam.image_encoder
    ref_buffers = {name for name, _ in ref_enc.named_buffers() if name.endswith("attention_bias_idxs")}
    our_buffers = {name for name, _ in TinyViT().named_buffers() if name.endswith("attention_bias_idxs")}
    assert our_buffers == ref_buffers
    assert not any(key.endswith("attention_bias_idxs") for key in TinyViT().state_dict())


@pytest.mark.parametrize("window", [1, 7, 14])
def test_relative_offset_index_matches_reference_numbering(reference_sam, window):
    if window == 1:
        assert relative_offset_index(1).tolist() == [[0]]
        return
    stage = 1 if window == 7 else 2
    ref_attn = reference_sam.image_encoder.layers[stage].blocks[0].attn
    assert torch.equal(relative_offset_index(window), ref_attn.attention_bias_idxs)


@pytest.mark.parametrize(
    "batch, height, width, window",
    [(2, 14, 14, 7), (1, 16, 16, 7), (2, 5, 9, 7), (1, 64, 64, 14), (1, 13, 20, 1)],
)
def test_windows_are_zero_padded_row_major_and_invert(batch, height, width, window):
    x = torch.randn(batch, height, width, 3)
    pad_bottom, pad_right = -height % window, -width % window
    padded = torch.nn.functional.pad(x, (0, 0, 0, pad_right, 0, pad_bottom))
    rows, cols = padded.shape[1] // window, padded.shape[2] // window
    expected = (
        padded.view(batch, rows, window, cols, window, 3)
        .transpose(2, 3)
        .reshape(batch * rows * cols, window * window, 3)
    )
    windows = image_to_windows(x, window)
    assert torch.equal(windows, expected)
    back = windows_to_image(windows, batch, height, width)
    assert back.is_contiguous()
    assert torch.equal(back, x)


def test_checkpoint_round_trip_strict(reference_sam, random_weights):
    # A MobileSAM checkpoint stores the encoder under "image_encoder.".
    prefix = "image_encoder."
    checkpoint = {prefix + k: v for k, v in random_weights.items()}
    checkpoint.update({k: v for k, v in reference_sam.state_dict().items() if not k.startswith(prefix)})
    encoder_part = {k.removeprefix(prefix): v for k, v in checkpoint.items() if k.startswith(prefix)}

    ours = TinyViT()
    ours.load_state_dict(encoder_part, strict=True)
    back = copy.deepcopy(reference_sam.image_encoder)
    back.load_state_dict(ours.state_dict(), strict=True)
    for key, value in back.state_dict().items():
        assert torch.equal(value, random_weights[key]), key


def test_matches_reference_fp32_at_1024(reference_sam, random_weights, image, ours_fp32_output):
    ref_enc = copy.deepcopy(reference_sam.image_encoder)
    ref_enc.load_state_dict(random_weights, strict=True)
    # The reference gathers its attention bias on eval(); do it after loading.
    ref_enc.eval()
    with torch.inference_mode():
        expected = ref_enc(image)
    assert ours_fp32_output.shape == (1, 256, 64, 64)
    assert expected.abs().mean() > 0.1  # the comparison is about a real signal
    assert relative_error(ours_fp32_output, expected) <= 1e-4


def test_bf16_close_to_fp32(ours_fp32, image, ours_fp32_output):
    model = copy.deepcopy(ours_fp32).to(torch.bfloat16)
    with torch.inference_mode():
        out = model(image.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert out.shape == ours_fp32_output.shape
    assert relative_error(out.float(), ours_fp32_output) <= 3e-2


def test_small_configuration_forward_shape():
    model = TinyViT(**SMALL, out_chans=32).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 256, 256))
    assert out.shape == (2, 32, 16, 16)
    assert torch.isfinite(out).all()


def test_batch_items_are_independent():
    torch.manual_seed(0)
    model = TinyViT(**SMALL).eval()
    model.load_state_dict(random_state_dict(model.state_dict(), seed=3))
    x = torch.randn(2, 3, 256, 256)
    with torch.inference_mode():
        both = model(x)
        second = model(x[1:])
    assert relative_error(both[1:], second) < 1e-5


@pytest.mark.parametrize("rows", [1, 3, 7])
def test_mbconv_in_strips_matches_one_piece(monkeypatch, rows):
    # Strips that do not divide the height (13), a one-row last strip, two images.
    block = tiny_vit_conv.MBConv(8, 4.0)
    block.load_state_dict(random_state_dict(block.state_dict(), seed=13))
    block.eval()
    x = torch.randn(2, 8, 13, 10).contiguous(memory_format=torch.channels_last)
    calls = []
    monkeypatch.setattr(block, "_in_strips", lambda t, r: calls.append(r) or type(block)._in_strips(block, t, r))
    with torch.inference_mode():
        whole = block(x)
        monkeypatch.setattr(tiny_vit_conv, "STRIP_BYTES", rows * 32 * 10 * 4)
        strips = block(x)
    assert calls == [rows]  # the strip path ran, with the rows the limit allows
    assert strips.is_contiguous(memory_format=torch.channels_last)
    assert relative_error(strips, whole) < 1e-6


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("module, shape", [
    (lambda: tiny_vit_conv.PatchEmbed(3, 16), (2, 3, 37, 21)),  # odd rows: the last strip ends in padding
    (lambda: tiny_vit_conv.PatchEmbed(3, 16), (1, 3, 36, 20)),
    (lambda: tiny_vit_conv.PatchMerging(8, 12, 2), (2, 8, 19, 11)),
    (lambda: tiny_vit_conv.PatchMerging(8, 12, 1), (1, 8, 10, 9)),
])
def test_stride_two_pairs_in_strips_match_one_piece(monkeypatch, module, shape, fused):
    # PatchEmbed's two 3x3 convolutions and PatchMerging's 1x1 + depthwise 3x3 (+ 1x1), a few rows at a
    # time: each strip's halo rows and the zero rows at the image's top and bottom must be the real ones.
    block = module()
    block.load_state_dict(random_state_dict(block.state_dict(), seed=19))
    block.eval()
    monkeypatch.setattr(fused_ops, "USE_FUSED_CPU_KERNELS", fused)
    x = torch.randn(*shape).contiguous(memory_format=torch.channels_last)
    strips = []
    real = tiny_vit_conv.pair_in_strips
    monkeypatch.setattr(tiny_vit_conv, "pair_in_strips", lambda *a, **k: strips.append(a[3]) or real(*a, **k))
    with torch.inference_mode():
        monkeypatch.setattr(tiny_vit_conv, "STRIP_BYTES", 2**40)
        whole = block(x)
        assert strips == []
        monkeypatch.setattr(tiny_vit_conv, "STRIP_BYTES", 1)  # one output row per strip
        one_row = block(x)
        monkeypatch.setattr(tiny_vit_conv, "STRIP_BYTES", 3 * hidden_row_bytes(block, shape[3]))
        three_rows = block(x)
    assert strips == [1, 3]
    for got in (one_row, three_rows):
        assert got.shape == whole.shape
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert relative_error(got, whole) < 1e-6


def hidden_row_bytes(block, width: int) -> int:
    """float32 bytes of the first convolution's output that one output row of the pair reads."""
    first, second = (block.seq[0], block.seq[2]) if isinstance(block, tiny_vit_conv.PatchEmbed) else (block.conv1, block.conv2)
    stride = first.c.stride[0]
    return second.c.stride[0] * first.c.out_channels * ((width - 1) // stride + 1) * 4


def test_encoder_in_strips_matches_one_piece(monkeypatch):
    # Stage 0's MBConv blocks and every MLP run in strips of a few rows here.
    model = TinyViT(**SMALL).eval()
    model.load_state_dict(random_state_dict(model.state_dict(), seed=17))
    x = torch.randn(2, 3, 256, 256)
    used = []
    real = tiny_vit_conv.row_strips
    monkeypatch.setattr(tiny_vit_conv, "row_strips", lambda h, r: used.append((h, r)) or real(h, r))
    monkeypatch.setattr(tiny_vit_attention, "row_strips", tiny_vit_conv.row_strips)
    with torch.inference_mode():
        monkeypatch.setattr(tiny_vit_conv, "STRIP_BYTES", 2**40)
        whole = model(x)
        assert used == []
        monkeypatch.setattr(tiny_vit_conv, "STRIP_BYTES", 5 * 64 * 64 * 4)
        strips = model(x)
    assert {h for h, _ in used} == {64, 32, 16}  # stage 0, stage 1, stages 2-3
    assert relative_error(strips, whole) < 1e-6


def test_row_strips_cover_the_height_once():
    assert tiny_vit_conv.row_strips(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert tiny_vit_conv.row_strips(6, 6) == [(0, 6)]


def test_cached_folding_follows_new_weights():
    model = TinyViT(**SMALL).eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        model(x)  # fills the caches with the initial weights
    new = random_state_dict(model.state_dict(), seed=5)
    model.load_state_dict(new)
    fresh = TinyViT(**SMALL).eval()
    fresh.load_state_dict(new)
    with torch.inference_mode():
        assert torch.equal(model(x), fresh(x))

    # In-place edits of a single parameter are noticed as well.
    with torch.no_grad():
        model.layers[2].blocks[0].attn.attention_biases.add_(1.0)
        model.layers[0].blocks[0].conv2.bn.running_mean.add_(0.5)
        fresh.layers[2].blocks[0].attn.attention_biases.add_(1.0)
        fresh.layers[0].blocks[0].conv2.bn.running_mean.add_(0.5)
    with torch.inference_mode():
        assert torch.equal(model(x), fresh(x))


def test_eval_folding_matches_batchnorm_layers():
    # The folded conv+BN of eval mode gives the same result as running them apart.
    model = TinyViT(**SMALL)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=7))
    conv_bn = model.layers[0].blocks[0].conv2.eval()
    x = torch.randn(1, conv_bn.c.in_channels, 20, 20)
    with torch.no_grad():
        unfused = conv_bn.bn(conv_bn.c(x))
        fused = conv_bn(x)
    assert relative_error(fused, unfused) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_cpu_kernels_match_plain_ops(monkeypatch, dtype):
    if not fused_ops._fused_kernels_work(dtype):
        pytest.skip(f"oneDNN fused kernels not usable for {dtype} here")
    model = TinyViT(**SMALL)
    model.load_state_dict(random_state_dict(model.state_dict(), seed=11))
    model = model.eval().to(dtype)
    x = torch.randn(1, 3, 256, 256).to(dtype)
    with torch.inference_mode():
        fused = model(x)
        monkeypatch.setattr(fused_ops, "USE_FUSED_CPU_KERNELS", False)
        plain = model(x)
    tolerance = 1e-5 if dtype == torch.float32 else 3e-2
    assert relative_error(fused.float(), plain.float()) <= tolerance


def test_gradients_reach_parameters_in_eval_mode():
    model = TinyViT(**{**SMALL, "img_size": 128}).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 128, 128))  # caches exist, but must not cut the graph
    model(torch.randn(1, 3, 128, 128)).square().sum().backward()
    assert model.layers[1].blocks[0].attn.attention_biases.grad.abs().sum() > 0
    assert model.layers[0].blocks[0].conv1.c.weight.grad.abs().sum() > 0
    assert model.layers[0].blocks[0].conv1.bn.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(img_size=1000),
        dict(img_size=0),
        dict(embed_dims=(64, 128, 160)),
        dict(embed_dims=(63, 128, 160, 320)),
        dict(num_heads=(2, 3, 5, 10)),
        dict(depths=(2, 2, 0, 2)),
        dict(window_sizes=(7, 7, -1, 7)),
        dict(mlp_ratio=0),
        dict(mlp_ratio=float("nan")),
        dict(local_conv_size=2),
    ],
)
def test_invalid_configuration_raises_value_error(kwargs):
    with pytest.raises(ValueError):
        TinyViT(**{**SMALL, **kwargs})


def test_non_int_size_raises_type_error():
    with pytest.raises(TypeError):
        TinyViT(img_size=256.0)


def test_wrong_input_shape_raises_value_error():
    model = TinyViT(**SMALL).eval()
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(1, 3, 512, 512))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(3, 256, 256))
    with pytest.raises(ValueError, match="empty"):
        model(torch.randn(0, 3, 256, 256))


def test_wrong_input_dtype_raises_type_error():
    model = TinyViT(**SMALL).eval()
    with pytest.raises(TypeError, match="dtype"):
        model(torch.randn(1, 3, 256, 256, dtype=torch.float64))
    with pytest.raises(TypeError):
        model([[1.0]])
