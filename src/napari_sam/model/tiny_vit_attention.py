"""The attention side of TinyViT: transformer blocks that attend inside square windows.

Stages 1-3 of the encoder. Each block attends within windows of the
(B, H, W, C) feature map, with a learned bias per relative offset inside the
window (gathered once into a (heads, N, N) bias and remembered in eval mode),
then mixes neighbouring pixels with a depthwise convolution and applies a
GELU MLP; residual additions ride inside the linear kernels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from napari_sam.model.common import LayerNorm
from napari_sam.model.fused import apply_linear
from napari_sam.model.tiny_vit_conv import ConvBatchNorm, DerivedTensorCache, PatchMerging, row_strips, rows_per_strip


def relative_offset_index(window_size: int) -> torch.Tensor:
    """(N, N) index into a per-head bias table, N = window_size**2.

    Two positions share a bias when their |row| and |column| distances are
    equal. The table is ordered the way TinyViT numbers the offsets (in order of
    first appearance when scanning position pairs row-major); that order is
    simply offset (dy, dx) -> dy * window_size + dx, because the first row of
    pairs (from the top-left corner) already meets every offset once.
    """
    coords = torch.arange(window_size)
    rows = coords.repeat_interleave(window_size)
    cols = coords.repeat(window_size)
    dy = (rows[:, None] - rows[None, :]).abs()
    dx = (cols[:, None] - cols[None, :]).abs()
    return dy * window_size + dx


def _window_parts(length: int, window_size: int) -> list[tuple[int, int, slice, int]]:
    """Split 0..length into a run of whole windows and a last partial window.

    Each part is (start, stop, window indices, positions used in each window).
    """
    whole, rest = divmod(length, window_size)
    parts = []
    if whole:
        parts.append((0, whole * window_size, slice(0, whole), window_size))
    if rest:
        parts.append((whole * window_size, length, slice(whole, whole + 1), rest))
    return parts


def image_to_windows(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * rows * cols, window_size**2, C) windows, zero-padded.

    Windows run row-major over the image, tokens row-major inside a window.
    Written in one pass (a pad followed by a reshape would copy twice): the
    image is cut into whole-window and partial-window blocks, each of which is
    a strided view on both sides.
    """
    batch, height, width, dim = x.shape
    ws = window_size
    rows, cols = -(-height // ws), -(-width // ws)
    windows = x.new_empty(batch, rows, cols, ws, ws, dim)
    grid = windows.permute(0, 1, 3, 2, 4, 5)  # (B, rows, ws, cols, ws, C): image order
    for r0, r1, row_windows, row_used in _window_parts(height, ws):
        for c0, c1, col_windows, col_used in _window_parts(width, ws):
            block = x[:, r0:r1, c0:c1].unflatten(1, (-1, row_used)).unflatten(3, (-1, col_used))
            grid[:, row_windows, :row_used, col_windows, :col_used].copy_(block)
    if height % ws:
        grid[:, -1, height % ws :].zero_()
    if width % ws:
        grid[:, :, :, -1, width % ws :].zero_()
    return windows.view(batch * rows * cols, ws * ws, dim)


def windows_to_image(windows: torch.Tensor, batch: int, height: int, width: int) -> torch.Tensor:
    """Inverse of `image_to_windows`: back to contiguous (B, H, W, C), padding dropped."""
    dim = windows.shape[-1]
    ws = math.isqrt(windows.shape[1])
    rows, cols = -(-height // ws), -(-width // ws)
    grid = windows.view(batch, rows, cols, ws, ws, dim).permute(0, 1, 3, 2, 4, 5)
    image = windows.new_empty(batch, height, width, dim)
    for r0, r1, row_windows, row_used in _window_parts(height, ws):
        for c0, c1, col_windows, col_used in _window_parts(width, ws):
            block = image[:, r0:r1, c0:c1].unflatten(1, (-1, row_used)).unflatten(3, (-1, col_used))
            block.copy_(grid[:, row_windows, :row_used, col_windows, :col_used])
    return image


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping square windows.

    Works on (B, H, W, C) features and adds them back to its result (the
    residual connection rides along with the output projection). When H or W
    is not a multiple of the window the features are padded with zeros at the
    bottom/right; like the original, the padded positions are normalised and
    take part as keys (they are not masked), which the trained weights expect.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.norm = LayerNorm(dim)
        # Per head the output holds [query, key, value], head_dim each.
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        num_positions = window_size * window_size
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, num_positions))
        self.register_buffer(
            "attention_bias_idxs", relative_offset_index(window_size), persistent=False
        )
        self._bias = DerivedTensorCache()

    def train(self, mode: bool = True):
        self._bias.clear()
        return super().train(mode)

    def attention_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """The (1, heads, N, N) additive bias, in the dtype of the queries."""

        def gather() -> torch.Tensor:
            # 4-D (1, heads, N, N): the fused CPU attention kernel takes 4-D masks only.
            return self.attention_biases[:, self.attention_bias_idxs].unsqueeze(0).to(dtype)

        if self.training:
            return gather()
        return self._bias.get((self.attention_biases, self.attention_bias_idxs), gather, (dtype,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + attention(x), for (B, H, W, C) features."""
        batch, height, width, dim = x.shape
        windows = image_to_windows(x, self.window_size)
        n_windows, n_tokens, _ = windows.shape

        qkv = apply_linear(self.qkv, self.norm(windows))
        qkv = qkv.view(n_windows, n_tokens, self.num_heads, 3, self.head_dim)
        # (windows, heads, tokens, head_dim) views; SDPA takes them as they are.
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.attention_bias(q.dtype))
        out = out.transpose(1, 2).reshape(n_windows, n_tokens, dim)
        # The residual is added while still in window order (padding included;
        # it is dropped when going back to the image).
        out = apply_linear(self.proj, out, add=windows)
        return windows_to_image(out, batch, height, width)


class FeedForward(nn.Module):
    """LayerNorm, then the two-layer GELU MLP of a transformer block; adds its input back."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        hidden = apply_linear(self.fc1, self.norm(x), gelu=True)
        return apply_linear(self.fc2, hidden, add=x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + MLP(x), for (B, H, W, C) features."""
        # Every token is independent, so a large hidden tensor (stage 1 at
        # 1024x1024: 32 MiB, which glibc maps afresh, page by page, each call;
        # see tiny_vit_conv.STRIP_BYTES) is made in strips of rows instead.
        height, width = x.shape[1], x.shape[2]
        rows = rows_per_strip(x, height, self.fc1.out_features * width * x.element_size())
        if rows is None:
            return self._mlp(x)
        out = torch.empty_like(x)
        for i in range(x.shape[0]):
            for r0, r1 in row_strips(height, rows):
                out[i : i + 1, r0:r1] = self._mlp(x[i : i + 1, r0:r1])
        return out


class TinyViTBlock(nn.Module):
    """Window attention, a depthwise 3x3 convolution, then the MLP; on (B, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        # Registration order only fixes the state_dict key order (MobileSAM's).
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBatchNorm(dim, dim, local_conv_size, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(x)  # adds its input back
        # Contiguous (B, H, W, C) seen as NCHW is channels_last memory, so the
        # permutes are free.
        x = self.local_conv(x.permute(0, 3, 1, 2))
        return self.mlp(x.permute(0, 2, 3, 1))  # adds its input back


class TransformerStage(nn.Module):
    """Stages 1-3: TinyViT blocks on (B, H, W, C), then optional patch merging."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        out_dim: int | None,
        stride: int,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size) for _ in range(depth)
        )
        self.downsample = None if out_dim is None else PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x
