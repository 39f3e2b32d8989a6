"""Workspace.stack_embeddings: a stack job's embeddings come from the annotator's lookup chain."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from napari_sam.embedding_cache import EmbeddingCache
from napari_sam.embeddings import EmbeddingSource
from napari_sam.model import SamPredictor
from napari_sam.model.build import build_sam, tiny_config
from napari_sam.session import ImagePlanes, Workspace
from napari_sam.volume import EmbeddingStore


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = build_sam(tiny_config()).eval()
    model.model_name, model.checkpoint_sha256 = "vit_t-test", "1" * 64  # a checkpoint hash: storable
    return model


def session_on(data, model):
    engine = SimpleNamespace(new_predictor=lambda: SamPredictor(model, precision="fp32"))
    return SimpleNamespace(planes=ImagePlanes(data), engine=engine)


def test_a_stack_uses_the_workspace_memory_and_store(model, tmp_path):
    data = np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32)  # (t, z, y, x)
    memory, store = EmbeddingCache(64), EmbeddingStore(tmp_path)
    workspace = Workspace(embeddings=EmbeddingSource(memory, store))
    stack = workspace.stack_embeddings(session_on(data, model), (1, slice(None), slice(None), slice(None)))
    assert stack.source is workspace.embeddings
    assert np.array_equal(np.asarray(stack.stack), data[1])
    stack.get(0)
    assert len(store) == 1 and len(memory) == 1


def test_stacks_off_the_disk_share_memory_only(model, tmp_path):
    data = np.random.default_rng(1).random((3, 32, 32)).astype(np.float32)
    memory, store = EmbeddingCache(64), EmbeddingStore(tmp_path)
    workspace = Workspace(embeddings=EmbeddingSource(memory, store), store_stacks=False)
    stack = workspace.stack_embeddings(session_on(data, model), (slice(None),) * 3)
    assert stack.source.store is None and stack.source.memory is memory
    stack.get(2)
    assert len(store) == 0 and len(memory) == 1


def test_what_is_missing_is_said(model):
    workspace = Workspace()
    with pytest.raises(ValueError, match="choose a 3D image"):
        workspace.stack_embeddings(None, ())
    no_model = SimpleNamespace(planes=ImagePlanes(np.zeros((2, 8, 8))), engine=None)
    with pytest.raises(ValueError, match="load a model first"):
        workspace.stack_embeddings(no_model, (slice(None),) * 3)


def test_an_embedding_computed_into_the_store_equals_the_one_read_back(model, tmp_path):
    """The store keeps float16: what the source computes now is what it gives back after napari is reopened,
    so a slice decodes the same either way (a float32 embedding kept in full in memory did not)."""
    data = np.random.default_rng(2).random((2, 32, 32)).astype(np.float32)
    store = EmbeddingStore(tmp_path)
    first = Workspace(embeddings=EmbeddingSource(EmbeddingCache(64), store))
    computed = first.stack_embeddings(session_on(data, model), (slice(None),) * 3).get(1)
    later = Workspace(embeddings=EmbeddingSource(EmbeddingCache(64), EmbeddingStore(tmp_path)))
    read = later.stack_embeddings(session_on(data, model), (slice(None),) * 3)
    again = read.get(1)
    assert read.source.encoder_calls == 0 and read.source.disk_reads == 1
    assert torch.equal(computed.features.float(), again.features.float())
    assert computed.features.dtype == torch.float32 and computed.features.abs().max() > 0
