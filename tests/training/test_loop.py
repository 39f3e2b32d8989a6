import numpy as np
import pytest
import torch

from helpers import read_only_folder

from napari_sam.model.build import build_sam
from napari_sam.model.checkpoint import read_state_dict
from napari_sam.model.zoo import load_model
from napari_sam.training import TrainingInterrupted, TrainOptions, train, training_config
from napari_sam.training.checkpoints import KEEP_FLOAT32, partial_path
from napari_sam.training.data import GeneratedSource, draw_prepared, encoder_batch
from napari_sam.training.interactive import interactive_loss, select_objects
from napari_sam.training.loop import _computing_in, learning_rate


def tiny_options(out, **kw):
    base = dict(out=out, size="tiny", steps=3, batch_size=1, objects_per_image=2, rounds=2, seed=3,
                save_every=100, log_every=1, device="cpu")
    base.update(kw)
    return TrainOptions(**base)


def quiet(line):
    pass


def test_tiny_run_writes_a_model_that_load_model_reads(tmp_path):
    out = tmp_path / "model.pt"
    result = train(tiny_options(out, save_every=2), log=quiet)
    assert result.path == out and result.steps == 3
    # Written through a temporary file, which is gone; no unfinished run is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    model = load_model(out, device="cpu")
    assert model.image_size == training_config("tiny").image_size
    assert model.config.encoder_dim == training_config("tiny").encoder_dim


def test_half_precision_file_loads_into_float32_model(tmp_path):
    out = tmp_path / "half.pt"
    train(tiny_options(out, steps=1, half=True), log=quiet)
    state = read_state_dict(out)
    for key, value in state.items():
        if value.is_floating_point():
            assert value.dtype == (torch.float32 if key in KEEP_FLOAT32 else torch.float16), key
    model = load_model(out, device="cpu")
    loaded = model.state_dict()
    assert all(v.dtype == torch.float32 for v in loaded.values() if v.is_floating_point())
    key = "mask_decoder.iou_token.weight"
    assert torch.equal(loaded[key], state[key].float())


def test_existing_output_is_never_overwritten_without_permission(tmp_path):
    out = tmp_path / "model.pt"
    out.write_bytes(b"precious")
    with pytest.raises(ValueError, match="--overwrite"):
        train(tiny_options(out), log=quiet)
    assert out.read_bytes() == b"precious"
    train(tiny_options(out, steps=1, overwrite=True), log=quiet)
    assert load_model(out, device="cpu") is not None


def test_interrupted_run_resumes_from_the_saved_step(tmp_path):
    def interrupt_after_step_2(line):
        if line.startswith("step 2/"):
            raise KeyboardInterrupt

    out = tmp_path / "resumed.pt"
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny_options(out, steps=4), log=interrupt_after_step_2)
    assert info.value.step == 2
    partial = partial_path(out)
    assert partial.exists() and not out.exists()
    assert torch.load(partial, weights_only=True)["step"] == 2

    lines = []
    train(tiny_options(out, steps=4), log=lines.append)
    assert any("resuming" in line and "step 2 of 4" in line for line in lines)
    assert [line.split()[1] for line in lines if line.startswith("step ")] == ["3/4", "4/4"]
    assert not partial.exists()

    # Same seed without interruption: the very same weights.
    straight = tmp_path / "straight.pt"
    train(tiny_options(straight, steps=4), log=quiet)
    a, b = read_state_dict(out), read_state_dict(straight)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def test_resume_without_an_unfinished_run_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no unfinished run"):
        train(tiny_options(tmp_path / "m.pt", resume=True), log=quiet)


def test_unfinished_run_of_another_size_is_not_mixed_up(tmp_path):
    out = tmp_path / "m.pt"

    def stop(line):
        if line.startswith("step "):
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted):
        train(tiny_options(out), log=stop)
    with pytest.raises(ValueError, match="--restart"):
        train(tiny_options(out, size="demo"), log=quiet)


def test_init_of_another_size_gives_a_clear_message(tmp_path):
    ckpt = tmp_path / "tiny.pt"
    torch.save(build_sam(training_config("tiny")).state_dict(), ckpt)
    with pytest.raises(ValueError, match="--size asks for"):
        train(tiny_options(tmp_path / "m.pt", size="demo", init=str(ckpt)), log=quiet)
    with pytest.raises(ValueError, match="neither a known model"):
        train(tiny_options(tmp_path / "m.pt", init=str(tmp_path / "missing.pt")), log=quiet)


def test_init_from_a_checkpoint_continues_its_weights(tmp_path):
    ckpt = tmp_path / "tiny.pt"
    torch.manual_seed(7)
    start = build_sam(training_config("tiny"))
    torch.save(start.state_dict(), ckpt)
    out = tmp_path / "m.pt"
    train(tiny_options(out, size=None, init=str(ckpt), steps=1, lr=1e-9), log=quiet)
    trained = read_state_dict(out)
    key = "image_encoder.patch_embed.proj.weight"
    torch.testing.assert_close(trained[key], start.state_dict()[key], atol=1e-6, rtol=0)


def test_bf16_run_keeps_float32_weights(tmp_path):
    lines = []
    out = tmp_path / "model.pt"
    train(tiny_options(out, precision="bf16"), log=lines.append)
    assert "computing in bf16" in lines[0]
    saved = read_state_dict(out)
    # bf16 is for the products only: what is learnt is kept (and written) at full precision.
    assert {v.dtype for v in saved.values() if v.is_floating_point()} == {torch.float32}


def test_fp32_run_says_nothing_of_bf16(tmp_path):
    lines = []
    train(tiny_options(tmp_path / "model.pt", precision="fp32"), log=lines.append)
    assert lines[0].startswith("training ") and "bf16" not in lines[0]


def test_bad_options_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--steps"):
        train(tiny_options(tmp_path / "m.pt", steps=0), log=quiet)
    with pytest.raises(ValueError, match="--lr"):
        train(tiny_options(tmp_path / "m.pt", lr=-1.0), log=quiet)
    with pytest.raises(ValueError, match="folder"):
        train(tiny_options(tmp_path / "nowhere" / "m.pt"), log=quiet)
    with pytest.raises(ValueError, match="--precision"):
        train(tiny_options(tmp_path / "m.pt", precision="fp16"), log=quiet)
    with pytest.raises(ValueError, match="--full-size-loss"):
        train(tiny_options(tmp_path / "m.pt", full_size_loss=1.5), log=quiet)


def test_learning_rate_warms_up_then_decays():
    lrs = [learning_rate(s, 100, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(0.05, abs=0.01)


@pytest.mark.parametrize("precision, full_size", [("fp32", False), ("bf16", False), ("bf16", True)])
def test_training_lowers_the_interactive_loss(precision, full_size):
    torch.manual_seed(0)
    model = build_sam(training_config("tiny")).train()
    cfg = model.config
    pairs = [draw_prepared(GeneratedSource(), 11, 0, b, cfg.image_size, 4 * cfg.embedding_size) for b in range(2)]
    image_index, masks, low_res = select_objects(pairs, 3, np.random.default_rng(0))
    x = encoder_batch(pairs, model)

    def loss_now():
        with _computing_in(torch.bfloat16 if precision == "bf16" else torch.float32, torch.device("cpu")):
            emb = model.image_encoder(x)[torch.from_numpy(image_index)]
            return interactive_loss(model, emb, masks, low_res, 2, 0.5, np.random.default_rng(1),
                                    loss_at_input_size=full_size)[0]

    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    with torch.no_grad():
        before = loss_now().item()
    for _ in range(15):
        optimizer.zero_grad()
        loss_now().backward()
        optimizer.step()
    with torch.no_grad():
        after = loss_now().item()
    assert after < 0.7 * before


def test_position_scale_sharpens_the_click_code_of_a_new_model(tmp_path):
    out = tmp_path / "m.pt"
    train(tiny_options(out, steps=1, position_scale=4.0), log=quiet)
    torch.manual_seed(3)  # the seed of tiny_options: the same random start
    start = build_sam(training_config("tiny"))
    key = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
    saved = read_state_dict(out)[key]
    torch.testing.assert_close(saved, 4.0 * start.state_dict()[key])
    with pytest.raises(ValueError, match="--position-scale"):
        train(tiny_options(tmp_path / "n.pt", position_scale=0.0), log=quiet)


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    from napari_sam.training import checkpoints

    target = tmp_path / "model.pt"
    checkpoints.save_atomic({"a": torch.ones(2)}, target)

    def broken_save(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_atomic({"a": torch.zeros(2)}, target)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left


def test_coverage_targets_are_area_fractions_of_each_mask_pixel():
    from napari_sam.training.interactive import object_coverage

    mask = np.zeros((16, 16), bool)
    mask[0:4, 0:4] = True  # one whole low-res pixel
    mask[4:6, 4:8] = True  # half of the next one on the diagonal
    cover = object_coverage(mask, 4)
    assert cover.shape == (4, 4)
    assert cover[0, 0] == 1.0 and cover[1, 1] == 0.5
    assert cover.sum() == pytest.approx(mask.sum() / 16)


def _one_step_batch():
    torch.manual_seed(0)
    model = build_sam(training_config("tiny")).train()
    cfg = model.config
    pairs = [draw_prepared(GeneratedSource(), 5, 0, 0, cfg.image_size, 4 * cfg.embedding_size)]
    image_index, masks, low_res = select_objects(pairs, 3, np.random.default_rng(0))
    with torch.no_grad():
        emb = model.image_encoder(encoder_batch(pairs, model))[torch.from_numpy(image_index)]
    return model, emb, masks, low_res


@pytest.mark.parametrize("full_size", [False, True])
def test_the_loss_compares_masks_at_the_size_asked_for(full_size, monkeypatch):
    from napari_sam.training import interactive as loop

    model, emb, masks, low_res = _one_step_batch()
    seen = []

    def recording_loss(logits, iou_pred, targets):
        seen.append((tuple(logits.shape[-2:]), targets.cpu().numpy()))
        return loop_sam_loss(logits, iou_pred, targets)

    loop_sam_loss = loop.sam_loss
    monkeypatch.setattr(loop, "sam_loss", recording_loss)
    with torch.no_grad():
        interactive_loss(model, emb, masks, low_res, 2, 0.0, np.random.default_rng(1), loss_at_input_size=full_size)
    assert len(seen) == 2  # one per round
    S, L = model.image_size, low_res.shape[-1]
    for size, targets in seen:
        if full_size:
            # The very label masks, in some order, at the input size: no coverage fractions.
            assert size == (S, S)
            assert sorted(t.sum() for t in targets) == sorted(m.sum() for m in masks)
            assert set(np.unique(targets)) <= {0.0, 1.0}
        else:
            assert size == (L, L)
            assert np.allclose(sorted(t.sum() for t in targets), sorted(c.sum() for c in low_res))


def test_the_last_share_of_steps_uses_the_full_size_loss(tmp_path, monkeypatch):
    from napari_sam.training import loop

    flags = []
    real = loop.interactive_loss

    def recording(*args, loss_at_input_size=False, **kw):
        flags.append(loss_at_input_size)
        return real(*args, loss_at_input_size=loss_at_input_size, **kw)

    monkeypatch.setattr(loop, "interactive_loss", recording)
    lines = []
    train(tiny_options(tmp_path / "m.pt", steps=4, full_size_loss=0.5), log=lines.append)
    assert flags == [False, False, True, True]
    assert any("from step 3: the loss compares masks at the input size" in line for line in lines)
    flags.clear()
    train(tiny_options(tmp_path / "n.pt", steps=2, full_size_loss=0.0), log=quiet)
    assert flags == [False, False]


def test_unwritable_output_folder_is_refused_before_the_first_step(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    read_only_folder(monkeypatch, folder)
    lines = []
    with pytest.raises(ValueError) as info:
        train(tiny_options(folder / "m.pt", steps=2), log=lines.append)
    message = str(info.value)
    assert str(folder) in message and "read-only" in message and ".tmp" not in message
    assert not [line for line in lines if line.startswith("step ")]  # refused before training, not after


def test_a_model_that_cannot_be_written_at_the_end_is_kept_as_the_unfinished_run(tmp_path, monkeypatch):
    from napari_sam.training import checkpoints

    out = tmp_path / "m.pt"
    real = checkpoints.save_atomic

    def disk_full_for_the_model(obj, path):
        if path == out:
            raise OSError(28, "No space left on device")
        return real(obj, path)

    monkeypatch.setattr(checkpoints, "save_atomic", disk_full_for_the_model)
    with pytest.raises(OSError) as info:
        train(tiny_options(out, steps=2), log=quiet)
    assert str(out) in str(info.value) and "run the same command again" in str(info.value)
    partial = partial_path(out)
    assert torch.load(partial, weights_only=True)["step"] == 2
    monkeypatch.undo()
    lines = []
    train(tiny_options(out, steps=2), log=lines.append)  # writes the model without training again
    assert out.is_file() and not partial.exists()
    assert not [line for line in lines if line.startswith("step ")]


def test_a_fine_tuned_model_keeps_its_bases_automatic_settings(tmp_path):
    from napari_sam.auto.recommended import recommended_settings, with_auto_settings
    from napari_sam.model import load_model

    base = tmp_path / "base.pt"
    settings = {"points_per_side": 8, "pred_iou_thresh": 0.5}
    torch.save(with_auto_settings(build_sam(training_config("tiny")).state_dict(), settings), base)
    out = tmp_path / "tuned.pt"
    lines = []
    train(tiny_options(out, size=None, init=str(base), steps=1), log=lines.append)
    assert recommended_settings(name=str(out)) == settings
    assert "automatic settings" in lines[-1]
    load_model(str(out))  # the settings beside the weights do not hinder loading
    plain = tmp_path / "plain.pt"
    train(tiny_options(plain), log=quiet)  # a new model: none recorded
    assert recommended_settings(name=str(plain)) == {}
