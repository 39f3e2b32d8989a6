"""build_sam and reading the architecture back from weights (config_from_state_dict)."""

from dataclasses import fields, replace

import pytest
import torch

from napari_sam.model import CheckpointError
from napari_sam.model.build import PRESETS, SamConfig, build_sam, config_from_state_dict, tiny_config

VIT_FIELDS = ("image_size", "patch_size", "encoder_dim", "encoder_depth", "encoder_heads", "window_size",
              "global_attn_indexes", "prompt_dim", "decoder_depth", "decoder_heads", "decoder_mlp_dim")

# Small custom architectures, each differing from the others in some number the weights must reveal.
# (Decoder heads leave no trace in the weights, so all keep SAM's 8.)
CUSTOM_VITS = {
    "tiny": SamConfig(encoder="vit", image_size=128, encoder_dim=32, encoder_depth=2, encoder_heads=2, window_size=4,
                      global_attn_indexes=(1,), prompt_dim=32, decoder_mlp_dim=64),
    "wider-deeper": SamConfig(encoder="vit", image_size=64, encoder_dim=48, encoder_depth=4, encoder_heads=3,
                              window_size=2, global_attn_indexes=(0, 3), prompt_dim=16, decoder_depth=1,
                              decoder_mlp_dim=32),
    "patch8-all-windowed": SamConfig(encoder="vit", image_size=96, patch_size=8, encoder_dim=16, encoder_depth=3,
                                     encoder_heads=4, window_size=5, global_attn_indexes=(), prompt_dim=16,
                                     decoder_depth=3, decoder_mlp_dim=48),
}
# TinyViT: the first stage is convolutional, so its nominal heads/window stay MobileSAM's (2, 7).
CUSTOM_TINY_VITS = {
    "small": SamConfig(encoder="tiny_vit", tiny_embed_dims=(16, 32, 40, 48), tiny_depths=(1, 1, 1, 1),
                       tiny_heads=(2, 2, 2, 2), tiny_window_sizes=(7, 4, 4, 4), prompt_dim=32, decoder_mlp_dim=64),
    "uneven": SamConfig(encoder="tiny_vit", tiny_embed_dims=(8, 24, 32, 64), tiny_depths=(2, 1, 3, 2),
                        tiny_heads=(2, 3, 4, 8), tiny_window_sizes=(7, 5, 3, 2), prompt_dim=16, decoder_depth=1,
                        decoder_mlp_dim=16),
}


def meta_state_dict(model_type):
    """Names and shapes of a model's weights without allocating or initialising them (vit_h is 2.5 GB)."""
    with torch.device("meta"):
        return build_sam(model_type).state_dict()


# --------------------------------------------------------- architecture round trip
@pytest.mark.parametrize("name", CUSTOM_VITS)
def test_custom_vit_config_round_trips(name):
    cfg = CUSTOM_VITS[name]
    assert config_from_state_dict(build_sam(cfg).state_dict()) == cfg


@pytest.mark.parametrize("name", CUSTOM_TINY_VITS)
def test_custom_tiny_vit_config_round_trips(name):
    cfg = CUSTOM_TINY_VITS[name]
    assert config_from_state_dict(build_sam(cfg).state_dict()) == cfg


def test_tiny_vit_weights_do_not_record_the_input_size():
    cfg = replace(CUSTOM_TINY_VITS["small"], image_size=256)
    found = config_from_state_dict(build_sam(cfg).state_dict())
    assert found.image_size == 1024  # MobileSAM's; build_sam(cfg, checkpoint=...) keeps the asked-for size
    assert replace(found, image_size=256) == cfg


@pytest.mark.parametrize("encoder", ["vit", "tiny_vit"])
def test_tiny_config_round_trips_in_the_numbers_its_encoder_uses(encoder):
    cfg = tiny_config(encoder=encoder)
    found = config_from_state_dict(build_sam(cfg).state_dict())
    assert found.encoder == encoder and found.model_type == "custom"
    if encoder == "vit":
        used = VIT_FIELDS
    else:
        used = ("patch_size", "tiny_embed_dims", "tiny_depths", "prompt_dim", "decoder_depth", "decoder_mlp_dim")
        assert found.tiny_heads[1:] == cfg.tiny_heads[1:]
        assert found.tiny_window_sizes[1:] == cfg.tiny_window_sizes[1:]
    for name in used:
        assert getattr(found, name) == getattr(cfg, name), name
    # The inferred config builds a model the weights fit exactly.
    model = build_sam(cfg)
    build_sam(found).load_state_dict(model.state_dict(), strict=True)


@pytest.mark.parametrize("name", ["vit_b", "vit_t"])
def test_real_presets_round_trip(name):
    found = config_from_state_dict(build_sam(name).state_dict())
    assert found == PRESETS[name]
    assert found.model_type == name


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h", "vit_t"])
def test_every_preset_is_recognised_from_its_weight_shapes(name):
    found = config_from_state_dict(meta_state_dict(name))
    assert found == PRESETS[name] and found.model_type == name


def test_meta_shapes_are_the_real_shapes():
    # The shortcut above is only valid if building on "meta" gives the real names and shapes.
    real = {k: tuple(v.shape) for k, v in build_sam("vit_t").state_dict().items()}
    assert {k: tuple(v.shape) for k, v in meta_state_dict("vit_t").items()} == real


def test_presets_differ_from_each_other():
    found = {config_from_state_dict(meta_state_dict(name)).model_type for name in PRESETS}
    assert found == set(PRESETS)


def test_built_model_is_in_eval_mode_and_saves_only_sam_weights():
    model = build_sam(tiny_config())
    assert not model.training
    assert model.image_size == 128 and model.embedding_size == 8
    keys = model.state_dict().keys()
    assert all(k.split(".")[0] in ("image_encoder", "prompt_encoder", "mask_decoder") for k in keys)
    assert "pixel_mean" not in keys  # not saved, as in the official files


# ---------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("model_type", ["vit_x", "VIT_B", "", None, 3])
def test_unknown_model_type_is_refused(model_type):
    with pytest.raises(ValueError, match="unknown model type"):
        build_sam(model_type)


def test_unknown_encoder_is_refused():
    with pytest.raises(ValueError, match="encoder"):
        build_sam(replace(tiny_config(), encoder="resnet"))


def _sam_without(prefix):
    return {k: v for k, v in build_sam(tiny_config()).state_dict().items() if not k.startswith(prefix)}


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"weight": torch.zeros(3, 3), "bias": torch.zeros(3)},  # some other network
        pytest.param("resnet", id="resnet-like"),
        pytest.param("no-decoder", id="no-decoder"),
        pytest.param("no-neck", id="no-neck"),
        pytest.param("scalar-pos-embed", id="scalar-pos-embed"),
        pytest.param("decoder-width", id="decoder-width-differs"),
    ],
)
def test_not_a_sam_state_dict_is_refused(state):
    if state == "resnet":
        state = {"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}
    elif state == "no-decoder":
        state = _sam_without("mask_decoder.")
    elif state == "no-neck":
        state = _sam_without("image_encoder.neck.")
    elif state == "scalar-pos-embed":
        state = build_sam(tiny_config()).state_dict()
        state["image_encoder.pos_embed"] = torch.zeros(())
    elif state == "decoder-width":
        state = build_sam(tiny_config()).state_dict()
        state["mask_decoder.iou_token.weight"] = torch.zeros(1, 48)
    with pytest.raises(ValueError, match="not a Segment Anything model"):
        config_from_state_dict(state)


def test_error_names_the_source():
    with pytest.raises(ValueError, match="my_weights.pth"):
        config_from_state_dict({}, source="my_weights.pth")


# ---------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def vit_t_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "mobile_sam.pt"
    torch.save(build_sam("vit_t").state_dict(), path)
    return path


def test_checkpoint_of_another_model_type_is_refused_naming_the_file(vit_t_file):
    with pytest.raises(CheckpointError, match="mobile_sam.pt") as err:
        build_sam("vit_b", checkpoint=vit_t_file)
    assert "vit_t" in str(err.value) and "vit_b" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_checkpoint_of_the_asked_for_preset_loads(vit_t_file):
    saved = torch.load(vit_t_file, weights_only=True)
    model = build_sam("vit_t", checkpoint=vit_t_file)
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name


@pytest.mark.parametrize("encoder", ["vit", "tiny_vit"])
def test_custom_checkpoint_loads_into_the_same_config(tmp_path, encoder):
    cfg = tiny_config(encoder=encoder)
    torch.manual_seed(4)
    original = build_sam(cfg)
    path = tmp_path / "tiny.pt"
    torch.save(original.state_dict(), path)
    loaded = build_sam(cfg, checkpoint=path)
    assert loaded.image_size == cfg.image_size  # for TinyViT the asked-for size, not the 1024 default
    for name, value in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    x = torch.randn(1, 3, cfg.image_size, cfg.image_size)
    with torch.inference_mode():
        torch.testing.assert_close(loaded.image_encoder(x), original.image_encoder(x), rtol=0, atol=0)


def test_custom_checkpoint_of_another_size_is_refused(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(build_sam(tiny_config()).state_dict(), path)
    bigger = replace(tiny_config(), encoder_dim=64)
    with pytest.raises(CheckpointError, match="tiny.pt"):
        build_sam(bigger, checkpoint=path)


@pytest.mark.parametrize(
    "key, value",
    [
        ("prompt_encoder.no_mask_embed.weight", torch.zeros(2, 32)),  # a tensor of the wrong shape
        ("prompt_encoder.extra_embed.weight", torch.zeros(1, 32)),  # a weight this design does not have
    ],
    ids=["wrong-shape", "unexpected-key"],
)
def test_checkpoint_that_does_not_fit_is_refused_naming_the_file(tmp_path, key, value):
    state = build_sam(tiny_config()).state_dict()
    state[key] = value
    path = tmp_path / "odd_weights.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="odd_weights.pt") as err:
        build_sam(tiny_config(), checkpoint=path)
    assert key.split(".")[1] in str(err.value)


def test_config_fields_are_all_numbers_or_names():
    # A config is plain data: it can be compared, hashed and printed in an error message.
    cfg = tiny_config()
    assert hash(cfg) == hash(tiny_config())
    for f in fields(cfg):
        assert isinstance(getattr(cfg, f.name), (int, str, tuple)), f.name


def test_gradients_flow_through_the_vit_encoder_for_training():
    # The inference paths use out= and in-place kernels; training must not.
    from napari_sam.model.build import build_sam, tiny_config

    model = build_sam(tiny_config(image_size=64)).train()
    x = torch.randn(1, 3, 64, 64)
    model.image_encoder(x).square().sum().backward()
    block = model.image_encoder.blocks[0]
    assert block.attn.rel_pos_h.grad is not None and block.attn.rel_pos_h.grad.abs().sum() > 0
    assert block.attn.qkv.weight.grad.abs().sum() > 0


def test_training_attention_computes_what_inference_does():
    # Training takes plain differentiable products, inference the blockwise
    # in-place kernels: the same encoder must give the same embedding either way.
    from napari_sam.model.build import build_sam, tiny_config

    torch.manual_seed(0)
    model = build_sam(tiny_config(image_size=64)).eval()
    for block in model.image_encoder.blocks:  # non-zero relative positions, so the bias matters
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.5)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        inference = model.image_encoder(x)
    training = model.image_encoder(x)
    assert training.requires_grad
    torch.testing.assert_close(training.detach(), inference, atol=1e-4, rtol=1e-4)
