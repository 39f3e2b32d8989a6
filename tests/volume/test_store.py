import os

import numpy as np
import pytest
import torch

from napari_sam.model.embedding import ImageEmbedding
from napari_sam.volume import entry_format
from napari_sam.volume import store as store_module
from napari_sam.volume.store import CacheWriteError, EmbeddingStore, SliceKey

MODEL = "tiny:sha256:" + "ab" * 32
RULE = "v1:linear:given:0.0:1000.0"


def embedding(seed=0, model_id=MODEL, rule=RULE, shape=(1, 32, 8, 8)):
    gen = torch.Generator().manual_seed(seed)
    return ImageEmbedding(torch.randn(shape, generator=gen), (100, 120), (107, 128), model_id, rule)


def key(fp="f" * 32, model_id=MODEL, rule=RULE):
    return SliceKey(fp, model_id, rule)


def test_round_trip_within_float16_precision(tmp_path):
    store = EmbeddingStore(tmp_path)
    emb = embedding()
    store.put(key(), emb)
    back = EmbeddingStore(tmp_path).get(key())
    assert back is not None
    assert back.features.dtype == torch.float16
    assert back.original_size == (100, 120) and back.input_size == (107, 128)
    assert back.model_id == MODEL and back.preprocessing == RULE
    torch.testing.assert_close(back.features.float(), emb.features, rtol=1e-3, atol=1e-3)
    assert len(store) == 1
    assert store.usage_bytes() == os.path.getsize(store.path_for(key())) > 32 * 8 * 8 * 2


def test_missing_entry_is_none(tmp_path):
    assert EmbeddingStore(tmp_path / "not-yet").get(key()) is None
    assert not EmbeddingStore(tmp_path).contains(key())


@pytest.mark.parametrize(
    "other",
    [
        key(model_id="tiny:sha256:" + "cd" * 32),  # other weights
        key(rule="v1:linear:given:0.0:2000.0"),  # other contrast rule
        key(fp="e" * 32),  # slice pixels changed
    ],
)
def test_other_identity_is_never_used(tmp_path, other):
    store = EmbeddingStore(tmp_path)
    store.put(key(), embedding())
    assert store.get(other) is None
    assert not store.contains(other)


def test_other_format_version_is_never_used(tmp_path, monkeypatch):
    store = EmbeddingStore(tmp_path)
    monkeypatch.setattr(entry_format, "FORMAT_VERSION", 0)
    store.put(key(), embedding())
    monkeypatch.undo()
    assert store.get(key()) is None


def test_header_naming_another_identity_under_the_right_name_is_not_used(tmp_path):
    # A file whose name matches but whose header describes another slice (collision, copied file).
    store = EmbeddingStore(tmp_path)
    store.put(key(fp="e" * 32), embedding())
    os.replace(store.path_for(key(fp="e" * 32)), store.path_for(key()))
    assert store.get(key()) is None
    assert not store.contains(key())


def test_header_with_other_version_is_not_used(tmp_path):
    store = EmbeddingStore(tmp_path)
    path = store.put(key(), embedding())
    data = path.read_bytes()
    version = f'"format": {entry_format.FORMAT_VERSION}'.encode()
    assert version in data
    path.write_bytes(data.replace(version, b'"format": 9'))
    assert store.get(key()) is None


@pytest.mark.parametrize("damage", ["truncate", "truncate_header", "garbage", "flip_byte", "empty"])
def test_damaged_entry_reads_as_missing_and_is_removed(tmp_path, damage):
    store = EmbeddingStore(tmp_path)
    path = store.put(key(), embedding())
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) - 100])
    elif damage == "truncate_header":
        path.write_bytes(data[:30])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "flip_byte":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    else:
        path.write_bytes(b"")
    assert store.get(key()) is None
    assert not path.exists()
    # and it can be written again
    store.put(key(), embedding())
    assert store.get(key()) is not None


def test_quick_presence_check_rejects_a_cut_file(tmp_path):
    store = EmbeddingStore(tmp_path)
    path = store.put(key(), embedding())
    assert store.contains(key())
    path.write_bytes(path.read_bytes()[:-1])
    assert not store.contains(key())


def test_failed_write_leaves_no_entry_and_no_temp_file(tmp_path, monkeypatch):
    store = EmbeddingStore(tmp_path)

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "fsync", full_disk)
    with pytest.raises(CacheWriteError, match="disk is full"):
        store.put(key(), embedding())
    monkeypatch.undo()
    assert store.get(key()) is None
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_gives_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = EmbeddingStore(blocker / "embeddings")
    with pytest.raises(CacheWriteError, match="cannot create the embedding cache folder"):
        store.put(key(), embedding())
    with pytest.raises(ValueError, match="not a folder"):
        EmbeddingStore(blocker)


def test_size_limit_evicts_least_recently_used(tmp_path):
    store = EmbeddingStore(tmp_path, max_bytes=None)
    paths = [store.put(key(fp=f"{i:032x}"), embedding(i)) for i in range(4)]
    size = os.path.getsize(paths[0])
    for i, p in enumerate(paths):  # written long ago, in order
        os.utime(p, (1000 + i, 1000 + i))
    assert store.get(key(fp=f"{0:032x}")) is not None  # slice 0 used just now
    limited = EmbeddingStore(tmp_path, max_bytes=int(3.5 * size))
    limited.put(key(fp=f"{9:032x}"), embedding(9))
    present = {i for i in (0, 1, 2, 3, 9) if limited.contains(key(fp=f"{i:032x}"))}
    assert present == {0, 3, 9}  # the two least recently used (1, 2) went
    assert limited.usage_bytes() <= 3.5 * size


def test_entry_larger_than_limit_is_still_kept(tmp_path):
    store = EmbeddingStore(tmp_path, max_bytes=10)
    store.put(key(fp="1" * 32), embedding(1))
    store.put(key(fp="2" * 32), embedding(2))
    assert not store.contains(key(fp="1" * 32))
    assert store.contains(key(fp="2" * 32))


def test_clear_removes_only_our_files(tmp_path):
    (tmp_path / "notes.txt").write_text("the user's own file")
    store = EmbeddingStore(tmp_path)
    for i in range(3):
        store.put(key(fp=f"{i:032x}"), embedding(i))
    (tmp_path / ".writing-abc.tmp").write_bytes(b"left over from a crash")
    used = store.usage_bytes()
    assert used > 0
    assert store.clear() >= used
    assert store.usage_bytes() == 0 and len(store) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_models_without_checkpoint_hash_are_not_saved(tmp_path):
    emb = embedding(model_id="custom:unsaved:7f00")
    with pytest.raises(ValueError, match="no checkpoint hash"):
        EmbeddingStore(tmp_path).put(key(model_id="custom:unsaved:7f00"), emb)


def test_bad_arguments(tmp_path):
    store = EmbeddingStore(tmp_path)
    with pytest.raises(ValueError, match="max_bytes"):
        EmbeddingStore(tmp_path, max_bytes=0)
    with pytest.raises(TypeError, match="folder must be a path"):
        EmbeddingStore(3)
    with pytest.raises(TypeError, match="SliceKey"):
        store.get("abc")
    with pytest.raises(ValueError, match="fingerprint"):
        SliceKey("", MODEL, RULE)
    with pytest.raises(ValueError, match="the key names model"):
        store.put(key(model_id="tiny:sha256:" + "cd" * 32), embedding())


def test_default_folder_follows_cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path))
    assert EmbeddingStore().folder == tmp_path / "embeddings"


def test_an_edited_header_is_caught_by_the_checksum(tmp_path):
    # Same length, so the payload stays where it was: only a checksum over the header notices.
    store = EmbeddingStore(tmp_path)
    path = store.put(key(), embedding())
    data = path.read_bytes()
    assert data.count(b'"original_size": [100, 120]') == 1
    path.write_bytes(data.replace(b'"original_size": [100, 120]', b'"original_size": [956, 856]'))
    assert store.get(key()) is None
    assert not path.exists()  # damaged: removed, to be computed again


def test_an_entry_for_another_slice_size_is_not_used(tmp_path):
    store = EmbeddingStore(tmp_path)
    store.put(key(), embedding())  # made for a 100 x 120 slice
    assert store.get(key(), original_size=(100, 120)) is not None
    assert store.contains(key(), original_size=(100, 120))
    assert store.get(key(), original_size=(64, 64)) is None
    assert not store.contains(key(), original_size=(64, 64))


def test_an_embedding_that_is_not_finite_is_not_saved(tmp_path):
    emb = embedding()
    emb.features[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        EmbeddingStore(tmp_path).put(key(), emb)
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_cache_is_not_told_to_free_space(tmp_path, monkeypatch):
    from helpers import read_only_folder

    store = EmbeddingStore(tmp_path)
    read_only_folder(monkeypatch, tmp_path)
    with pytest.raises(CacheWriteError) as err:
        store.put(key(), embedding())
    message = str(err.value)
    assert "read-only" in message and str(tmp_path) in message and "choose another cache folder" in message
    assert "free some space" not in message and "full" not in message


def test_a_full_disk_is_told_to_free_space(tmp_path, monkeypatch):
    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "fsync", full_disk)
    with pytest.raises(CacheWriteError, match="the disk is full; free some space"):
        EmbeddingStore(tmp_path).put(key(), embedding())


def test_precision_is_part_of_an_entrys_identity(tmp_path):
    store = EmbeddingStore(tmp_path)
    bf16 = ImageEmbedding(embedding().features, (100, 120), (107, 128), MODEL, RULE, precision="bf16")
    store.put(SliceKey("f" * 32, MODEL, RULE, precision="bf16"), bf16)
    assert store.get(key()) is None and not store.contains(key())  # an fp32 request never gets a bf16 entry
    back = store.get(SliceKey("f" * 32, MODEL, RULE, precision="bf16"))
    assert back is not None and back.precision == "bf16"
    store.put(key(), embedding())
    assert store.get(key()).precision == "fp32" and len(store) == 2
    with pytest.raises(ValueError, match="precision"):
        store.put(key(), bf16)
