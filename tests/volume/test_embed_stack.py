import numpy as np
import pytest
import torch

from napari_sam.model import SamPredictor
from napari_sam.synthetic import make_nuclei_3d
from napari_sam.volume import EmbeddingStore, StackEmbeddings, embed_stack, stack_through
from napari_sam.volume.store import CacheWriteError

from volume_helpers import CountingPredictor, tiny_model


@pytest.fixture(scope="module")
def stack():
    img, _ = make_nuclei_3d((5, 48, 64), n_objects=4, seed=1, dtype=np.uint16)
    return img


def test_embeds_every_slice_and_reload_computes_nothing(tmp_path, predictor, stack):
    calls = []
    result = embed_stack(predictor, stack, EmbeddingStore(tmp_path), progress=lambda d, t: calls.append((d, t)))
    assert result.complete and result.computed == [0, 1, 2, 3, 4] and result.loaded == []
    assert predictor.encoder_runs == 5
    assert calls == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]

    again = CountingPredictor(predictor.model, device="cpu", precision="fp32")
    reloaded = embed_stack(again, stack, EmbeddingStore(tmp_path))
    assert again.encoder_runs == 0 and reloaded.loaded == [0, 1, 2, 3, 4]
    for i in range(5):
        torch.testing.assert_close(
            reloaded.embeddings[i].features.float(), result.embeddings[i].features.float(), rtol=1e-3, atol=1e-3
        )
        assert reloaded.embeddings[i].original_size == (48, 64)


def test_cached_embedding_decodes_like_a_fresh_one(tmp_path, predictor, stack):
    embed_stack(predictor, stack, EmbeddingStore(tmp_path))
    loaded = embed_stack(predictor, stack, EmbeddingStore(tmp_path)).embeddings[2]
    fresh = predictor.set_image(stack[2], intensity_range=StackEmbeddings(predictor, stack).intensity_range)
    box = np.array([10, 10, 40, 30])
    predictor.set_embedding(fresh)
    _, _, low_fresh = predictor.predict(box=box, multimask_output=False)
    predictor.set_embedding(loaded)
    _, _, low_loaded = predictor.predict(box=box, multimask_output=False)
    np.testing.assert_allclose(low_loaded, low_fresh, atol=2e-2 * np.abs(low_fresh).max())


def test_cancel_stops_between_slices_and_resume_computes_only_the_rest(tmp_path, predictor, stack):
    store = EmbeddingStore(tmp_path)
    done = []
    result = embed_stack(
        predictor, stack, store, progress=lambda d, t: done.append(d), should_cancel=lambda: len(done) > 2
    )
    assert result.cancelled and not result.complete
    assert result.computed == [0, 1] and predictor.encoder_runs == 2

    predictor.encoder_runs = 0
    resumed = embed_stack(predictor, stack, store)
    assert resumed.complete and resumed.loaded == [0, 1] and resumed.computed == [2, 3, 4]
    assert predictor.encoder_runs == 3


def test_changed_slice_is_recomputed(tmp_path, predictor, stack):
    store = EmbeddingStore(tmp_path)
    embed_stack(predictor, stack, store)
    edited = stack.copy()
    edited[3, 5:9, 5:9] += 7  # same intensity range, other pixels
    predictor.encoder_runs = 0
    result = embed_stack(predictor, edited, store)
    assert result.computed == [3] and predictor.encoder_runs == 1


def test_other_model_and_other_intensity_range_are_recomputed(tmp_path, predictor, stack):
    store = EmbeddingStore(tmp_path)
    embed_stack(predictor, stack, store)
    other = CountingPredictor(tiny_model(seed=1), device="cpu", precision="fp32")
    assert embed_stack(other, stack, store).computed == [0, 1, 2, 3, 4]
    lo, hi = StackEmbeddings(predictor, stack).intensity_range
    assert embed_stack(predictor, stack, store, intensity_range=(lo, hi + 1)).computed == [0, 1, 2, 3, 4]


def test_damaged_entry_is_recomputed(tmp_path, predictor, stack):
    store = EmbeddingStore(tmp_path)
    embed_stack(predictor, stack, store)
    sl = StackEmbeddings(predictor, stack, store)
    path = store.path_for(sl.key(1))
    path.write_bytes(path.read_bytes()[:-10])
    assert embed_stack(predictor, stack, store).computed == [1]


def test_without_keeping_only_the_cache_is_filled(tmp_path, predictor, stack):
    result = embed_stack(predictor, stack[:3], EmbeddingStore(tmp_path), keep=False)
    assert result.complete and result.embeddings == {} and result.computed == [0, 1, 2]
    assert len(EmbeddingStore(tmp_path)) == 3


def test_the_predictors_current_image_is_kept(tmp_path, predictor, stack):
    shown = predictor.set_image(stack[0])
    embed_stack(predictor, stack[1:3], EmbeddingStore(tmp_path))
    assert predictor.embedding.preprocessing == shown.preprocessing
    torch.testing.assert_close(predictor.embedding.features, shown.features)
    predictor.reset_image()
    embed_stack(predictor, stack[3:], EmbeddingStore(tmp_path))
    assert not predictor.is_image_set


def test_lazy_get_computes_once(tmp_path, predictor, stack):
    sl = StackEmbeddings(predictor, stack, EmbeddingStore(tmp_path))
    assert sl.missing() == [0, 1, 2, 3, 4]
    first = sl.get(3)
    assert sl.get(3) is first and predictor.encoder_runs == 1
    assert sl.missing() == [0, 1, 2, 4]


def test_unsaved_model_is_kept_in_memory_only(tmp_path, stack):
    model = tiny_model()
    model.checkpoint_sha256 = None
    pred = SamPredictor(model, device="cpu", precision="fp32")
    result = embed_stack(pred, stack[:2], EmbeddingStore(tmp_path))
    assert result.complete and list(tmp_path.iterdir()) == []


def test_store_failure_warns_and_goes_on_in_memory(tmp_path, predictor, stack):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.warns(RuntimeWarning, match="kept in memory only"):
        result = embed_stack(predictor, stack[:3], EmbeddingStore(blocker / "cache"))
    assert result.complete and len(result.embeddings) == 3
    with pytest.raises(CacheWriteError):
        embed_stack(predictor, stack[:3], EmbeddingStore(blocker / "cache"), cache_errors="raise")


def test_bad_stacks_are_refused(predictor, stack):
    with pytest.raises(ValueError, match="single 2D plane, not a stack"):
        embed_stack(predictor, stack[0])
    with pytest.raises(ValueError, match="4 dimensions"):
        embed_stack(predictor, stack[None])
    with pytest.raises(TypeError, match="dtype"):
        embed_stack(predictor, np.zeros((2, 8, 8), complex))
    with pytest.raises(TypeError, match="SamPredictor"):
        embed_stack("vit_t", stack)
    with pytest.raises(ValueError, match="slice 7 does not exist"):
        embed_stack(predictor, stack, indices=[7])


def test_stack_through_a_4d_image():
    tzyx = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    zstack, index = stack_through(tzyx, (1, 2, 0, 0))
    np.testing.assert_array_equal(zstack, tzyx[1])
    assert index[:2] == (1, slice(None))
    tstack, _ = stack_through(tzyx, (1, 2, 0, 0), axis=0)
    np.testing.assert_array_equal(tstack, tzyx[:, 2])
    with pytest.raises(ValueError, match="plane's own axes"):
        stack_through(tzyx, (0, 0, 0, 0), axis=2)
    with pytest.raises(ValueError, match="outside the image"):
        stack_through(tzyx, (5, 0, 0, 0))
    with pytest.raises(ValueError, match="single plane"):
        stack_through(tzyx[0, 0], (0, 0))


@pytest.mark.parametrize("shape", [(64, 64, 2), (5, 48, 4), (3, 128, 1)])
def test_a_trailing_channel_axis_is_not_taken_for_image_columns(predictor, shape):
    # (z, y, x, c) of a 2-channel stack used to become z*y "slices" of x by c pixels.
    with pytest.raises(ValueError, match=r"looks like .*channels.*rgb=True.*stack\[\.\.\., 0\]"):
        embed_stack(predictor, np.zeros(shape, np.uint16))


def test_narrow_planes_that_are_not_channels_are_kept(predictor):
    assert StackEmbeddings(predictor, np.zeros((3, 20, 6), np.uint16)).slice_shape == (20, 6)
    assert StackEmbeddings(predictor, np.zeros((3, 12, 4), np.uint16)).slice_shape == (12, 4)


def test_a_stored_entry_of_the_wrong_size_is_computed_again(tmp_path, predictor, stack):
    from napari_sam.model.embedding import ImageEmbedding

    store = EmbeddingStore(tmp_path)
    sl = StackEmbeddings(predictor, stack, store)
    good = sl.compute(0)
    wrong = ImageEmbedding(good.features, (good.original_size[0] + 8, good.original_size[1]), good.input_size,
                           good.model_id, good.preprocessing)
    store.put(sl.key(0), wrong)  # a consistent entry under slice 0's name, for a plane of another size
    again = StackEmbeddings(predictor, stack, store)
    assert not again.is_available(0)
    assert again.get(0).original_size == tuple(stack.shape[1:])
    assert again.computed == 1


def test_an_fp32_predictor_does_not_reuse_bf16_embeddings(tmp_path, stack):
    from volume_helpers import CountingPredictor, tiny_model

    model = tiny_model()
    half = CountingPredictor(model, device="cpu", precision="bf16")
    full = CountingPredictor(model, device="cpu", precision="fp32")
    store = EmbeddingStore(tmp_path)
    first = embed_stack(half, stack[:2], store)
    assert {e.precision for e in first.embeddings.values()} == {"bf16"}
    again = embed_stack(full, stack[:2], store)
    assert again.computed == [0, 1] and full.encoder_runs == 2
    assert {e.precision for e in again.embeddings.values()} == {"fp32"}
    assert embed_stack(half, stack[:2], store).loaded == [0, 1]  # each precision finds its own
    full.set_embedding(first.embeddings[0])  # decoding accepts either precision
    assert full.embedding.precision == "bf16"
