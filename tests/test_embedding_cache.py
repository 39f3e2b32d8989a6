import threading

import numpy as np
import pytest
import torch

from napari_sam.embedding_cache import EmbeddingCache, EmbeddingKey
from napari_sam.model.embedding import ImageEmbedding

MB = 2**20


def emb(mb: float = 1.0, model="m1", prep="uint8"):
    n = int(mb * MB / 4)
    return ImageEmbedding(torch.zeros(1, n, 1, 1), (8, 8), (8, 8), model, prep)


def key(z=0, image=None, model="m1", prep="uint8", precision="fp32"):
    """A key for slice z; each slice has pixels of its own unless ``image`` says otherwise."""
    return EmbeddingKey(image or f"img{z}", (z,), model, prep, precision)


def test_get_returns_what_was_put_and_misses_on_any_identity_change():
    cache = EmbeddingCache(10)
    e = emb()
    cache.put(key(3), e)
    assert cache.get(key(3)) is e
    assert cache.get(key(4)) is None
    assert cache.get(key(3, image="other")) is None
    assert cache.get(key(3, model="m2")) is None
    assert cache.get(key(3, prep="linear:given:0:1")) is None
    assert cache.get(key(3, precision="bf16")) is None
    # The same pixels at another place of the stack have the same embedding.
    assert cache.get(key(7, image="img3")) is e


def test_budget_in_megabytes_evicts_least_recently_used():
    cache = EmbeddingCache(3.5)
    for z in range(3):
        cache.put(key(z), emb(1))
    cache.get(key(0))  # 0 is now more recent than 1
    cache.put(key(3), emb(1))
    assert key(1) not in cache
    assert all(key(z) in cache for z in (0, 2, 3))
    assert cache.nbytes == 3 * MB
    assert cache.keys() == [key(2), key(0), key(3)]


def test_shrinking_the_budget_evicts_and_oversized_entries_are_refused():
    cache = EmbeddingCache(4)
    for z in range(4):
        cache.put(key(z), emb(1))
    cache.budget_mb = 2
    assert len(cache) == 2 and cache.nbytes == 2 * MB
    assert cache.put(key(9), emb(3)) is False
    assert key(9) not in cache and len(cache) == 2


def test_replacing_a_key_keeps_the_byte_count_right():
    cache = EmbeddingCache(10)
    cache.put(key(0), emb(1))
    cache.put(key(0), emb(2))
    assert len(cache) == 1 and cache.nbytes == 2 * MB
    cache.discard(key(0))
    assert cache.nbytes == 0


def test_discard_where_and_clear():
    cache = EmbeddingCache(10)
    cache.put(key(0, model="a"), emb())
    cache.put(key(1, model="b"), emb())
    assert cache.discard_where(lambda k: k.model_id == "a") == 1
    assert cache.keys() == [key(1, model="b")]
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match=">= 0"):
        EmbeddingCache(-1)
    with pytest.raises(TypeError, match="megabytes"):
        EmbeddingCache("lots")
    with pytest.raises(TypeError, match="EmbeddingKey"):
        EmbeddingCache().get(("img", 0))
    with pytest.raises(TypeError, match="nbytes"):
        EmbeddingCache().put(key(), np.zeros(3).tolist())
    with pytest.raises(TypeError, match="slice_index"):
        EmbeddingKey("img", "z", "m", "p")
    with pytest.raises(ValueError, match="negative"):
        EmbeddingKey("img", (-1,), "m", "p")
    with pytest.raises(TypeError, match="model_id"):
        EmbeddingKey("img", (), "", "p")


def test_keys_normalise_slice_indices():
    assert EmbeddingKey("i", [np.int64(2)], "m", "p") == EmbeddingKey("i", (2,), "m", "p")


def test_concurrent_puts_and_gets_keep_the_accounting_consistent():
    cache = EmbeddingCache(0.5)
    small = [emb(0.01) for _ in range(50)]

    def writer(offset):
        for i, e in enumerate(small):
            cache.put(key(i + offset), e)
            cache.get(key(i))

    threads = [threading.Thread(target=writer, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes == sum(cache.get(k).nbytes for k in cache.keys())
    assert cache.nbytes <= 0.5 * MB
