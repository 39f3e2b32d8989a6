"""The ViT encoder's global attention with the relative-position bias folded into the product (bf16, CPU)."""

import pytest
import torch

from napari_sam.model import image_encoder
from napari_sam.model.image_encoder import Attention, _attend_folded


def written_out(q, k, v, bias_h, bias_w):
    """softmax(q k^T / sqrt(d) + bias_h[row(k)] + bias_w[col(k)]) v, in float64, the scores written out."""
    q, k, v, bias_h, bias_w = (t.double() for t in (q, k, v, bias_h, bias_w))
    B, heads, N, hd = q.shape
    H, W = bias_h.shape[-2], bias_w.shape[-1]
    scores = (q @ k.transpose(-1, -2) * hd**-0.5).view(B, heads, N, H, W)
    scores = (scores + bias_h + bias_w).view(B, heads, N, N)
    return torch.softmax(scores, -1) @ v


@pytest.mark.parametrize("H, W", [(6, 6), (5, 7)])
def test_folding_the_bias_into_the_product_gives_the_written_out_attention(H, W):
    gen = torch.Generator().manual_seed(0)
    B, heads, hd, N = 1, 3, 16, H * W
    q, k, v = (torch.randn(B, heads, N, hd, generator=gen) for _ in range(3))
    bias_h = torch.randn(B, heads, N, H, 1, generator=gen)
    bias_w = torch.randn(B, heads, N, 1, W, generator=gen)
    expected = written_out(q, k, v, bias_h, bias_w)
    # exact maths: in float32 it matches to rounding
    assert torch.allclose(_attend_folded(q, k, v, bias_h, bias_w).double(), expected, atol=1e-5)
    # in bf16, to bf16's precision
    got = _attend_folded(*(t.bfloat16() for t in (q, k, v, bias_h, bias_w))).double()
    assert got.shape == expected.shape
    assert (got - expected).norm() / expected.norm() < 2e-2
    # a bias in the wrong place (rows and columns swapped) would be caught
    if H != W:
        return
    swapped = written_out(q, k, v, bias_w.transpose(-1, -2), bias_h.transpose(-1, -2))
    assert not torch.allclose(expected, swapped, atol=1e-3)


def test_global_attention_in_bf16_on_the_cpu_takes_the_folded_path_and_agrees_with_float32(monkeypatch):
    torch.manual_seed(0)
    grid = 40  # 1600 tokens: above the size where bf16 leaves SDPA's masked kernel
    att = Attention(64, 4, (grid, grid)).eval()
    torch.nn.init.normal_(att.rel_pos_h, std=0.5)
    torch.nn.init.normal_(att.rel_pos_w, std=0.5)
    qkv = torch.randn(1, grid, grid, 3 * 64)
    with torch.inference_mode():
        expected = att.attend(qkv)  # float32: SDPA with the bias as mask
        calls = []
        real = image_encoder._attend_folded
        monkeypatch.setattr(image_encoder, "_attend_folded", lambda *a: calls.append(1) or real(*a))
        got = att.bfloat16().attend(qkv.bfloat16()).float()
    assert calls == [1]
    assert (got - expected).norm() / expected.norm() < 2e-2


@pytest.mark.parametrize("budget_rows, expected_rows", [(300, 256), (700, 512), (200, 200), (5000, 1600)])
def test_float32_global_attention_in_blocks_of_query_rows_gives_the_written_out_attention(
        monkeypatch, budget_rows, expected_rows):
    """The mask is built for blocks of query rows, rounded down to a multiple of _QUERY_ROWS where the
    budget allows more; every block, the shorter last one included, gives the written-out attention."""
    torch.manual_seed(0)
    grid, heads, hd = 40, 2, 8  # 1600 tokens: 256-row blocks leave a last block of 64
    att = Attention(heads * hd, heads, (grid, grid)).eval()
    torch.nn.init.normal_(att.rel_pos_h, std=0.5)
    torch.nn.init.normal_(att.rel_pos_w, std=0.5)
    N = grid * grid
    monkeypatch.setattr(image_encoder, "_MAX_BIAS_BYTES", budget_rows * heads * N * 4)
    blocks = []
    real_sdpa = image_encoder.F.scaled_dot_product_attention

    def counting_sdpa(q, *args, **kwargs):
        blocks.append(q.shape[2])
        return real_sdpa(q, *args, **kwargs)

    monkeypatch.setattr(image_encoder.F, "scaled_dot_product_attention", counting_sdpa)
    qkv = torch.randn(1, grid, grid, 3 * heads * hd)
    with torch.inference_mode():
        got = att.attend(qkv)
    assert blocks[0] == expected_rows and sum(blocks) == N
    q, k, v = qkv.reshape(1, N, 3, heads, hd).permute(2, 0, 3, 1, 4)
    table_h = image_encoder.relative_position_table(att.rel_pos_h.detach(), grid)
    table_w = image_encoder.relative_position_table(att.rel_pos_w.detach(), grid)
    g = q.reshape(1, heads, grid, grid, hd)
    bias_h = torch.einsum("bnhwc,hkc->bnhwk", g, table_h).reshape(1, heads, N, grid, 1)
    bias_w = torch.einsum("bnhwc,wkc->bnhwk", g, table_w).reshape(1, heads, N, 1, grid)
    expected = written_out(q, k, v, bias_h, bias_w).transpose(1, 2).reshape(1, grid, grid, heads * hd)
    assert torch.allclose(got.double(), expected, atol=1e-5)
