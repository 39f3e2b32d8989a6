"""Reading SAM weight files: accepted layouts, and every way a file can be bad."""

import builtins
import hashlib
import pickle
import re
import warnings

import pytest
import torch

from napari_sam.model import checkpoint
from napari_sam.model.checkpoint import CheckpointError, file_sha256, read_state_dict


def sam_like_weights() -> dict[str, torch.Tensor]:
    """A few tensors named like the three parts of SAM (shapes do not matter here)."""
    g = torch.Generator().manual_seed(0)
    return {
        "image_encoder.patch_embed.proj.weight": torch.randn(4, 3, 2, 2, generator=g),
        "image_encoder.neck.0.weight": torch.randn(8, 4, 1, 1, generator=g),
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": torch.randn(2, 4, generator=g),
        "mask_decoder.iou_token.weight": torch.randn(1, 8, generator=g),
    }


def assert_same_weights(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype
        assert torch.equal(actual[key], value), key


def save(obj, path, **kwargs):
    torch.save(obj, path, **kwargs)
    return path


# --- accepted layouts ---------------------------------------------------------


def test_flat_state_dict_is_read_unchanged(tmp_path):
    weights = sam_like_weights()
    result = read_state_dict(save(weights, tmp_path / "flat.pth"))
    assert_same_weights(result, weights)
    assert all(t.device.type == "cpu" for t in result.values())


def test_accepts_str_path_and_legacy_torch_format(tmp_path):
    weights = sam_like_weights()
    path = save(weights, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert_same_weights(read_state_dict(str(path)), weights)


def test_training_checkpoint_with_sam_prefix_is_unwrapped(tmp_path):
    weights = sam_like_weights()
    training = {
        "model_state": {f"sam.{k}": v for k, v in weights.items()},
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 1e-5}]},
        "epoch": 12,
        "best_metric": 0.25,
        "init": {"model_class": "micro_sam.training.TrainableSAM"},
    }
    result = read_state_dict(save(training, tmp_path / "best.pt"))
    assert_same_weights(result, weights)


@pytest.mark.parametrize("wrapper", ["model", "state_dict", "model_state"])
def test_common_wrapper_keys_are_unwrapped(tmp_path, wrapper):
    weights = sam_like_weights()
    result = read_state_dict(save({wrapper: weights, "step": 3}, tmp_path / "wrapped.pt"))
    assert_same_weights(result, weights)


def test_dataparallel_module_prefix_is_stripped(tmp_path):
    weights = sam_like_weights()
    prefixed = {f"module.{k}": v for k, v in weights.items()}
    result = read_state_dict(save(prefixed, tmp_path / "dp.pth"))
    assert_same_weights(result, weights)


def test_stacked_prefixes_and_nested_wrappers(tmp_path):
    weights = sam_like_weights()
    content = {"model": {"state_dict": {f"module.sam.{k}": v for k, v in weights.items()}}}
    result = read_state_dict(save(content, tmp_path / "nested.pth"))
    assert_same_weights(result, weights)


def test_non_tensor_entries_and_entries_outside_sam_are_dropped(tmp_path):
    weights = sam_like_weights()
    content = dict(weights)
    content["image_encoder.note"] = "not a tensor"
    content["mask_decoder.count"] = 5
    content["decoder.extra_head.weight"] = torch.ones(2)  # a head trained next to SAM
    result = read_state_dict(save(content, tmp_path / "extra.pth"))
    assert_same_weights(result, weights)


def test_half_precision_weights_keep_their_dtype(tmp_path):
    weights = {k: v.half() for k, v in sam_like_weights().items()}
    result = read_state_dict(save(weights, tmp_path / "fp16.pth"))
    assert_same_weights(result, weights)


# --- bad files ----------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="does not exist") as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


def test_directory(tmp_path):
    with pytest.raises(CheckpointError, match="folder") as info:
        read_state_dict(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty") as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_file(tmp_path, zip_format):
    full = save(sam_like_weights(), tmp_path / "full.pth", _use_new_zipfile_serialization=zip_format)
    data = full.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged or incomplete") as info:
        read_state_dict(cut)
    assert str(cut) in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not weights\n", b"\x89PNG\r\n\x1a\n" + bytes(64), b"II*\x00" + bytes(64)],
    ids=["text", "png", "tiff"],
)
def test_file_that_is_not_a_torch_file(tmp_path, content):
    path = tmp_path / "image.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


class _WritesMarkerWhenUnpickled:
    """Unpickling this calls exec(), as a malicious checkpoint would."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def _write_payload(path, marker, how):
    content = {**sam_like_weights(), "payload": _WritesMarkerWhenUnpickled(marker)}
    if how == "raw_pickle":
        path.write_bytes(pickle.dumps(content, protocol=2))
    else:
        torch.save(content, path, _use_new_zipfile_serialization=(how == "zip"))


def test_payload_is_live_when_loaded_unsafely(tmp_path):
    # Control: proves the payload used below really runs code when a file is
    # opened without weights_only, so the refusal test can fail.
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pth"
    _write_payload(path, marker, "zip")
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("how", ["zip", "legacy", "raw_pickle"])
def test_file_that_would_run_code_is_refused_without_running_it(tmp_path, how):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pth"
    _write_payload(path, marker, how)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    assert not marker.exists(), "the file's code was executed"
    message = str(info.value)
    assert str(path) in message
    if how != "raw_pickle":  # a bare pickle is refused earlier, as "not a torch file"
        assert "run code" in message
        assert re.search(r"asks for '(builtins\.)?exec'", message)


def test_dict_without_sam_keys(tmp_path):
    path = save({"conv1.weight": torch.ones(3), "fc.bias": torch.zeros(2)}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="does not contain SAM weights") as info:
        read_state_dict(path)
    message = str(info.value)
    assert str(path) in message
    assert "image_encoder." in message and "conv1.weight" in message


def test_incomplete_sam_names_the_missing_parts(tmp_path):
    weights = {k: v for k, v in sam_like_weights().items() if not k.startswith("mask_decoder.")}
    path = save(weights, tmp_path / "encoder_only.pth")
    with pytest.raises(CheckpointError, match="mask_decoder") as info:
        read_state_dict(path)
    assert str(path) in str(info.value)
    assert "prompt_encoder" not in str(info.value)


def test_file_holding_a_list(tmp_path):
    path = save([torch.ones(2)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="list") as info:
        read_state_dict(path)
    assert str(path) in str(info.value)


def test_same_weight_with_and_without_prefix_is_ambiguous(tmp_path):
    weights = sam_like_weights()
    content = dict(weights)
    content["module.mask_decoder.iou_token.weight"] = torch.zeros(1, 8)
    with pytest.raises(CheckpointError, match="twice"):
        read_state_dict(save(content, tmp_path / "dup.pth"))


def test_path_of_wrong_type():
    with pytest.raises(TypeError, match="str or Path"):
        read_state_dict(123)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


# --- hashing ------------------------------------------------------------------


def test_file_sha256_matches_hashlib_across_chunks(tmp_path, monkeypatch):
    data = bytes(range(256)) * 41 + b"tail"
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(checkpoint, "_HASH_CHUNK", 1000)  # force many chunks
    assert file_sha256(path) == expected
    assert file_sha256(str(path)) == expected
    path.write_bytes(data[:-1])
    assert file_sha256(path) != expected


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_refused_naming_the_file(tmp_path, bad):
    weights = sam_like_weights()
    weights["mask_decoder.iou_token.weight"][0, 3] = bad
    path = save(weights, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError) as err:
        read_state_dict(path)
    message = str(err.value)
    assert str(path) in message and "mask_decoder.iou_token.weight" in message and "NaN or infinite" in message


def test_load_model_refuses_a_model_whose_weights_are_nan(tmp_path):
    from napari_sam.model import load_model
    from napari_sam.model.build import build_sam, tiny_config

    state = build_sam(tiny_config()).state_dict()
    for value in state.values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    path = save(state, tmp_path / "nan_model.pt")
    with pytest.raises(CheckpointError, match="nan_model.pt"):
        load_model(path, device="cpu")


def _quantised(weights, how):
    weights = dict(weights)
    if how == "quantised tensor":
        weights["image_encoder.w"] = torch.quantize_per_tensor(torch.randn(4, 4), 0.1, 0, torch.qint8)
    else:  # as torch's quantize_dynamic saves a linear layer: packed weights, a scale and a zero point
        weights["image_encoder.qkv.scale"] = torch.tensor(1.0)
        weights["image_encoder.qkv._packed_params._packed_params"] = (torch.randn(4, 4), None)
    return weights


@pytest.mark.parametrize("how", ["quantised tensor", "packed layer"])
def test_an_already_quantised_checkpoint_is_refused(tmp_path, how):
    path = tmp_path / "int8.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch deprecates creating quantised tensors
        save(_quantised(sam_like_weights(), how), path)
        with pytest.raises(CheckpointError, match=r"already quantised \(int8\).*original float32"):
            read_state_dict(path)
