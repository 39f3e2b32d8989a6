"""The session's engine (no Qt): embed, decode, mask prompt, loading a checkpoint file, the registry."""

import numpy as np
import pytest
import torch

from napari_sam.model.build import build_sam, tiny_config
from napari_sam.prompts import Prompt, PromptBook
from napari_sam.session import Engine, EngineRegistry, EngineSpec, SamEngine
from napari_sam.session.registry import load_sam_engine


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    return SamEngine(build_sam(tiny_config()), device="cpu", precision="fp32")


def test_embed_then_decode_a_prompt_from_the_book(engine):
    image = np.random.default_rng(0).integers(0, 255, (40, 60)).astype(np.uint8)
    emb = engine.embed(image)
    assert emb.original_size == (40, 60) and emb.model_id == engine.model_id
    book = PromptBook()
    req = book.update((), Prompt.make([[30, 20]], [1], box=[10, 5, 50, 35]))
    masks, iou, low = engine.decode(emb, req)
    assert masks.shape == (3, 40, 60) and iou.shape == (3,) and low.ndim == 3
    cands = book.set_result(req, masks, iou, low)
    # The interactive loop: the next request carries logits the decoder accepts.
    req2 = book.update((), Prompt.make([[30, 20], [5, 5]], [1, 0], box=[10, 5, 50, 35]))
    assert req2.mask_input.shape == (1, *low.shape[1:])
    masks2, _, _ = engine.decode(emb, req2)
    assert masks2.shape == (3, 40, 60) and cands.count == 3


def test_mask_prompt_matches_the_decoders_mask_input(engine):
    image = np.zeros((40, 60), np.uint8)
    emb = engine.embed(image)
    mask = np.zeros((40, 60), bool)
    mask[10:20, 20:40] = True
    logits = engine.mask_prompt(mask)
    assert logits.shape == (1, *engine.model.prompt_encoder.mask_input_size)
    book = PromptBook()
    req = book.start_edit((), 3, mask_logits=logits, box=[20, 10, 40, 20])
    masks, _, _ = engine.decode(emb, req)
    assert masks.shape == (3, 40, 60)


def test_a_local_checkpoint_file_loads_like_browse_does(tmp_path):
    model = build_sam(tiny_config())
    path = tmp_path / "my_sam.pth"
    torch.save(model.state_dict(), path)
    engine = load_sam_engine(str(path), "cpu", "fp32")
    assert engine.model_id == engine.model.weights_id
    assert engine.embed(np.zeros((16, 16), np.uint8)).original_size == (16, 16)


def test_embeddings_of_another_model_are_refused(engine):
    other = SamEngine(build_sam(tiny_config()), device="cpu", precision="fp32")
    emb = other.embed(np.zeros((16, 16), np.uint8))
    if emb.model_id == engine.model_id:
        pytest.skip("two random tiny models happened to share a weights id")
    req = PromptBook().update((), Prompt.make([[5, 5]], [1]))
    with pytest.raises(ValueError, match="embed the image again"):
        engine.decode(emb, req)


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_clicks_are_decoded_in_the_engines_precision_without_a_second_weight_copy(precision, dtype):
    torch.manual_seed(0)
    model = build_sam(tiny_config())
    eng = SamEngine(model, device="cpu", precision=precision)
    assert eng.decoder._decoder is eng.encoder._decoder  # shared, not copied again
    assert eng.decoder._encoder is eng.encoder._encoder
    assert eng.decoder._decoder.iou_token.weight.dtype == dtype
    assert model.mask_decoder.iou_token.weight.dtype == torch.float32  # the caller's model is untouched


def test_prepare_then_decode_gives_what_decoding_alone_gives():
    torch.manual_seed(0)
    model = build_sam(tiny_config())
    image = np.random.default_rng(3).integers(0, 255, (40, 60)).astype(np.uint8)
    prepared, plain = SamEngine(model, device="cpu", precision="fp32"), SamEngine(model, device="cpu", precision="fp32")
    emb = prepared.embed(image)
    prepared.prepare(emb)  # the first prepare also decodes a dummy click: it must leave no trace
    prepared.prepare(emb)
    book = PromptBook()
    req = book.update((), Prompt.make([[30, 20], [10, 30]], [1, 0]))
    for got, want in zip(prepared.decode(emb, req), plain.decode(emb, req)):
        np.testing.assert_array_equal(got, want)


def test_the_engine_offers_what_the_session_needs(engine):
    assert isinstance(engine, Engine)
    assert engine.precision == "fp32" and engine.device == "cpu"
    twin = engine.new_predictor()
    assert twin is not engine.encoder and twin.model is engine.model


def test_the_registry_loads_a_model_once_for_everyone(tmp_path):
    import threading

    loads = []
    gate = threading.Event()

    def factory(name, device, precision):
        loads.append(name)
        gate.wait(5)
        return object()

    registry = EngineRegistry(factory=factory)
    spec = EngineSpec("vit_b")
    got = []
    threads = [threading.Thread(target=lambda: got.append(registry.get(spec))) for _ in range(3)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join(5)
    assert loads == ["vit_b"] and len(got) == 3 and got[0] is got[1] is got[2]
    assert registry.loaded(spec) is got[0] and registry.loaded(EngineSpec("vit_b", precision="fp32")) is None
    with pytest.raises(ValueError, match="precision"):
        EngineSpec("vit_b", precision="int3")
    with pytest.raises(ValueError, match="choose a model"):
        EngineSpec("  ")


def test_clicks_hold_the_encoders_gate_so_a_background_embedding_pauses(engine, monkeypatch):
    image = np.random.default_rng(1).integers(0, 255, (40, 60)).astype(np.uint8)
    emb = engine.embed(image)
    seen = []
    real_predict = engine.decoder.predict

    def predict(**kwargs):
        seen.append(engine.encoder.foreground.busy)  # the embedding lane's encoder sees it
        return real_predict(**kwargs)

    monkeypatch.setattr(engine.decoder, "predict", predict)
    engine.prepare(emb)
    req = PromptBook().update((), Prompt.make([[30, 20]], [1]))
    engine.decode(emb, req)
    assert seen == [True, True]  # the warm-up click of prepare, then the click
    assert not engine.encoder.foreground.busy
