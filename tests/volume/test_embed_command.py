import argparse
import io

import numpy as np
import pytest
import tifffile
import torch

from napari_sam.model.build import build_sam, tiny_config
from napari_sam.synthetic import make_nuclei_3d
from napari_sam.volume import EmbeddingStore
from napari_sam.volume.cli import add_embed_command, run_embed


def parse(argv):
    parser = argparse.ArgumentParser(prog="napari-sam-annotator")
    add_embed_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    torch.manual_seed(0)
    torch.save(build_sam(tiny_config()).state_dict(), path)
    return path


def embed(argv):
    out = io.StringIO()
    args = parse(["embed", *map(str, argv)])
    assert args.func is run_embed
    return args.func(args, out=out), out.getvalue()


def test_embeds_a_tiff_and_a_second_run_computes_nothing(tmp_path, checkpoint):
    stack, _ = make_nuclei_3d((4, 40, 56), n_objects=3, seed=0, dtype=np.uint16)
    tif = tmp_path / "stack.tif"
    tifffile.imwrite(tif, stack)
    cache = tmp_path / "cache"
    code, text = embed([tif, "--model", checkpoint, "--cache", cache, "--device", "cpu", "--precision", "fp32"])
    assert code == 0, text
    assert "4 computed, 0 from the cache" in text
    assert len(EmbeddingStore(cache)) == 4
    code, text = embed([tif, "--model", checkpoint, "--cache", cache, "--device", "cpu", "--precision", "fp32", "--quiet"])
    assert code == 0, text
    assert "0 computed, 4 from the cache" in text and "slice 0" not in text


def test_every_z_stack_of_a_4d_image(tmp_path, checkpoint):
    tzyx = np.random.default_rng(0).integers(0, 4000, (2, 3, 32, 32), dtype=np.uint16)
    path = tmp_path / "tzyx.npy"
    np.save(path, tzyx)
    code, text = embed([path, "--model", checkpoint, "--cache", tmp_path / "c", "--device", "cpu"])
    assert code == 0, text
    assert "6 computed" in text and "(axis 0 = 1) slice 2" in text


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.tif", "does not exist"),
        (lambda d: (tifffile.imwrite(d / "plane.tif", np.zeros((32, 32), np.uint8)), d / "plane.tif")[1], "not a stack"),
        (lambda d: ((d / "x.png").write_bytes(b"png"), d / "x.png")[1], "neither a TIFF"),
        (lambda d: ((d / "bad.tif").write_bytes(b"not a tiff"), d / "bad.tif")[1], "cannot read"),
    ],
)
def test_bad_input_gives_a_clear_message(tmp_path, checkpoint, make, message):
    code, text = embed([make(tmp_path), "--model", checkpoint, "--cache", tmp_path / "c"])
    assert code == 2 and "error:" in text and message in text


def test_unknown_model_and_unwritable_cache(tmp_path, checkpoint):
    tif = tmp_path / "s.tif"
    tifffile.imwrite(tif, np.zeros((2, 32, 32), np.uint8))
    code, text = embed([tif, "--model", "no-such-model", "--cache", tmp_path / "c"])
    assert code == 2 and "no-such-model" in text
    (tmp_path / "blocker").write_text("x")
    code, text = embed([tif, "--model", checkpoint, "--cache", tmp_path / "blocker" / "c", "--device", "cpu"])
    assert code == 1 and "cannot create the embedding cache folder" in text


def test_a_two_channel_stack_needs_a_channel(tmp_path, checkpoint):
    zyxc = np.random.default_rng(0).integers(0, 4000, (2, 64, 64, 2), dtype=np.uint16)
    path = tmp_path / "two_channels.npy"
    np.save(path, zyxc)
    code, text = embed([path, "--model", checkpoint, "--cache", tmp_path / "c", "--device", "cpu"])
    assert code == 2 and "error:" in text and "--channel" in text and "computed" not in text
    code, text = embed([path, "--model", checkpoint, "--cache", tmp_path / "c", "--device", "cpu", "--channel", "1"])
    assert code == 0, text
    assert "2 computed" in text
    code, text = embed([path, "--model", checkpoint, "--cache", tmp_path / "c", "--channel", "2"])
    assert code == 2 and "--channel 2" in text and "0 to 1" in text


@pytest.mark.parametrize(
    "stack",
    [
        np.full((2, 64, 64), 2**64 - 1, np.uint64),  # constant, huge values: ZeroDivisionError in the image rule
        np.random.default_rng(0).integers(0, 4000, (3, 2, 5000), dtype=np.uint16),  # thin strips: Pillow's error
    ],
    ids=["constant-uint64", "thin-strips"],
)
def test_odd_but_valid_stacks_are_embedded(tmp_path, checkpoint, stack):
    path = tmp_path / "odd.npy"
    np.save(path, stack)
    code, text = embed([path, "--model", checkpoint, "--cache", tmp_path / "c", "--device", "cpu", "--quiet"])
    assert code == 0, text
    assert f"done: {len(stack)} slices" in text  # (two identical slices share one entry)


@pytest.mark.parametrize("error", [ValueError("the image is odd"), MemoryError("no room"), OSError(5, "I/O error")])
def test_a_failing_slice_ends_in_one_line(tmp_path, checkpoint, monkeypatch, error):
    from napari_sam.model.predictor import SamPredictor

    def failing(self, image, intensity_range=None):
        raise error

    monkeypatch.setattr(SamPredictor, "set_image", failing)
    path = tmp_path / "s.npy"
    np.save(path, np.zeros((2, 32, 32), np.uint16))
    code, text = embed([path, "--model", checkpoint, "--cache", tmp_path / "c", "--device", "cpu"])
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert code != 0 and "Traceback" not in text
    assert len(lines) == 1 and "slice 0" in lines[0] and str(error.args[-1]) in lines[0]


def test_an_unexpected_error_is_one_line_unless_debug(tmp_path, checkpoint, monkeypatch, capsys):
    from napari_sam.cli import main
    from napari_sam.model.predictor import SamPredictor

    def broken(self, image, intensity_range=None):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(SamPredictor, "set_image", broken)
    path = tmp_path / "s.npy"
    np.save(path, np.zeros((2, 32, 32), np.uint16))
    argv = ["embed", str(path), "--model", str(checkpoint), "--cache", str(tmp_path / "c"), "--device", "cpu"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "Traceback" not in err
    assert "RuntimeError: something nobody expected" in last and "--debug" in last
    with pytest.raises(RuntimeError, match="nobody expected"):
        main([*argv, "--debug"])
