"""The decoder's cross attention, folded through the few prompt tokens at inference, gives the same numbers."""

import pytest
import torch

from napari_sam.model.transformer import Attention, TwoWayTransformer


def _attention(seed=0, dim=256, heads=8, downsample=2):
    torch.manual_seed(seed)
    attn = Attention(dim, heads, downsample_rate=downsample)
    with torch.no_grad():  # non-zero biases everywhere, so dropping one would show
        for p in attn.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return attn.eval()


def _close(a, b, tol=1e-5):
    return (a - b).abs().max().item() <= tol * b.abs().max().item()


@pytest.mark.parametrize("batch", [1, 3])
def test_few_tokens_reading_the_image(batch):
    attn = _attention()
    tokens = torch.randn(batch, 7, 256)
    image = torch.randn(1, 900, 256).expand(batch, -1, -1)  # one image shared by several prompts
    values = torch.randn(1, 900, 256).expand(batch, -1, -1)
    with torch.no_grad():
        plain = attn.attend(tokens, image, values)
        folded = attn.attend_few_queries(tokens, image, values)
    assert folded.shape == plain.shape == (batch, 7, 256)
    assert _close(folded, plain)


@pytest.mark.parametrize("batch", [1, 2])  # one prompt takes plain matrix products, several batched ones
@pytest.mark.parametrize("projected_queries", [False, True])
def test_the_image_reading_few_tokens(projected_queries, batch):
    attn = _attention(seed=1)
    image = torch.randn(batch, 900, 256)
    tokens = torch.randn(batch, 9, 256)
    with torch.no_grad():
        qh = attn.project_q(image) if projected_queries else None
        plain = attn.attend(image, tokens, tokens)
        folded = attn.attend_few_keys(image, tokens, tokens, qh=qh)
    assert folded.shape == plain.shape == (batch, 900, 256)
    assert _close(folded, plain)


def test_folding_is_used_at_inference_only_and_only_where_it_saves_work(monkeypatch):
    attn = _attention()
    calls = []
    plain_attend = Attention.attend
    monkeypatch.setattr(Attention, "attend", lambda self, *a, **k: calls.append("plain") or plain_attend(self, *a, **k))
    tokens, image = torch.randn(1, 7, 256), torch.randn(1, 900, 256)
    with torch.no_grad():
        attn(tokens, image, image)
        attn(image, tokens, tokens)
    assert calls == []
    # Training keeps the plain path (its numbers are what the shipped model was trained with).
    out = attn(tokens, image, image)
    assert calls == ["plain"] and out.requires_grad
    # Tokens reading tokens, or so many prompt tokens that folding costs more: plain.
    with torch.no_grad():
        attn(tokens, tokens, tokens)
        attn(torch.randn(1, 20, 256), image, image)
    assert calls == ["plain"] * 3


def test_whole_two_way_transformer_folded_equals_plain():
    torch.manual_seed(2)
    transformer = TwoWayTransformer(depth=2, embedding_dim=256, num_heads=8, mlp_dim=512).eval()
    image, pe = torch.randn(1, 256, 24, 24), torch.randn(1, 256, 24, 24)
    tokens = torch.randn(1, 8, 256)
    with torch.no_grad():
        folded = transformer(image, pe, tokens)
        prepared = transformer(None, None, tokens, prepared=transformer.prepare_image(image, pe))
    with torch.enable_grad():
        plain = transformer(image, pe, tokens)
    for f, p, c in zip(folded, plain, prepared):
        assert _close(f, p.detach(), 1e-4)
        assert _close(c, p.detach(), 1e-4)


def test_folded_in_bf16_stays_near_float32():
    attn = _attention(seed=3)
    tokens, image = torch.randn(1, 7, 256), torch.randn(1, 4096, 256)
    with torch.no_grad():
        reference = attn.attend(tokens, image, image)
        low = attn.to(torch.bfloat16)
        folded = low.attend_few_queries(tokens.bfloat16(), image.bfloat16(), image.bfloat16()).float()
    assert _close(folded, reference, 3e-2)


def test_times_shared_equals_broadcast_matmul():
    from napari_sam.model.transformer import times_shared

    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 8, 7, 16, generator=g)
    shared = torch.randn(1, 8, 16, 50, generator=g)
    own = torch.randn(3, 8, 16, 50, generator=g)
    assert torch.allclose(times_shared(a, shared), torch.matmul(a, shared), atol=1e-5)
    assert torch.allclose(times_shared(a, own), torch.matmul(a, own), atol=1e-5)
    assert times_shared(a, shared).shape == (3, 8, 7, 50)
