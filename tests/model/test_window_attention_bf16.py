"""The ViT encoder's window attention in bf16 on the CPU (mask written by a product) and its cached bias tables."""

import torch

from napari_sam.model.image_encoder import Attention, _row_col_one_hot


def _window_attention(seed: int = 0, size: int = 7, dim: int = 32, heads: int = 2):
    gen = torch.Generator().manual_seed(seed)
    att = Attention(dim, heads, (size, size)).eval()
    with torch.no_grad():
        att.rel_pos_h.copy_(torch.randn(att.rel_pos_h.shape, generator=gen))
        att.rel_pos_w.copy_(torch.randn(att.rel_pos_w.shape, generator=gen))
    qkv = torch.randn(3, size, size, 3 * dim, generator=gen)  # three windows
    return att, qkv


def written_out(att: Attention, qkv: torch.Tensor) -> torch.Tensor:
    """SAM's definition in float64: scores, plus q . R_h[dy] and q . R_w[dx], softmax, times v."""
    B, H, W, C3 = qkv.shape
    heads, C = att.num_heads, C3 // 3
    hd = C // heads
    q, k, v = qkv.double().reshape(B, H * W, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
    coords = torch.arange(H)
    r_h = att.rel_pos_h.double()[coords[:, None] - coords[None, :] + H - 1]  # (H, H, hd)
    r_w = att.rel_pos_w.double()[coords[:, None] - coords[None, :] + W - 1]
    grid = q.reshape(B, heads, H, W, hd)
    bias = torch.einsum("bnhwc,hkc->bnhwk", grid, r_h)[..., :, None] + torch.einsum("bnhwc,wkc->bnhwk", grid, r_w)[..., None, :]
    scores = (q @ k.transpose(-1, -2)) * hd**-0.5 + bias.reshape(B, heads, H * W, H * W)
    out = torch.softmax(scores, -1) @ v
    return out.transpose(1, 2).reshape(B, H, W, C)


def test_the_one_hot_marks_each_tokens_row_and_column():
    one_hot = _row_col_one_hot(2, 3, torch.float32, torch.device("cpu"))
    assert one_hot.tolist() == [
        [1, 0, 1, 0, 0],
        [1, 0, 0, 1, 0],
        [1, 0, 0, 0, 1],
        [0, 1, 1, 0, 0],
        [0, 1, 0, 1, 0],
        [0, 1, 0, 0, 1],
    ]


def test_window_attention_in_bf16_agrees_with_the_written_out_definition():
    att, qkv = _window_attention()
    expected = written_out(att, qkv)
    with torch.inference_mode():
        assert (att.attend(qkv).double() - expected).norm() / expected.norm() < 1e-5  # float32
        got = att.bfloat16().attend(qkv.bfloat16()).double()
    assert (got - expected).norm() / expected.norm() < 2e-2
    # the test can see a misplaced bias: without the bias the answer is far off
    att_plain, _ = _window_attention()
    with torch.no_grad():
        att_plain.rel_pos_h.zero_()
        att_plain.rel_pos_w.zero_()
    assert (written_out(att_plain, qkv) - expected).norm() / expected.norm() > 0.1


def test_new_weights_are_not_served_from_the_cached_tables():
    att, qkv = _window_attention(seed=0)
    other, _ = _window_attention(seed=1)
    with torch.inference_mode():
        first = att.attend(qkv)
    att.load_state_dict(other.state_dict())
    with torch.inference_mode():
        again = att.attend(qkv)
    expected = written_out(other, qkv)
    assert (again.double() - expected).norm() / expected.norm() < 1e-5
    assert not torch.allclose(first, again, atol=1e-3)
