"""The ViT image encoder of SAM (ViT-B/L/H): an image becomes an embedding here.

A 1024x1024 image is cut into 16x16 patches (a 64x64 token grid). Most blocks
attend inside 14x14 windows; a few blocks attend globally. Attention scores get
a decomposed relative-position bias (one table along y, one along x). A small
convolutional "neck" maps the tokens to the 256-channel embedding the mask
decoder reads.

Attention runs through ``scaled_dot_product_attention`` with the relative
position bias passed as its additive mask, so PyTorch can pick its fused CPU or
GPU kernels; the result is the same as writing the softmax out by hand.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm, LayerNorm2d, MLPBlock
from .fused import apply_linear

# The bias of one global-attention call is (heads, N, N) with N = 4096 tokens:
# 400 MB for vit_b in bf16, 1 GB for vit_h in fp32. We build and use it for a
# block of query rows at a time, bounding that memory; such blocks also
# measured faster on a 2-core CPU than one huge mask (it stays nearer the cache).
# Blocks of a multiple of _QUERY_ROWS rows: the fused CPU kernel splits fewer
# query rows into smaller tiles. One vit_b global attention in float32 on a
# 2-core AVX2-only EPYC took 660-710 ms in blocks of 170 rows (32 MiB) and
# 557-570 ms in blocks of 256 (48 MiB); vit_h's width 917 -> 835 ms.
_MAX_BIAS_BYTES = 64 * 2**20
_QUERY_ROWS = 256
# Above this many tokens per attention call, bf16 on the CPU folds the bias
# into the product (see _attend_folded); the 196-token windows are faster
# through SDPA with the bias as its mask.
_SDPA_MAX_TOKENS_CPU_BF16 = 1024
# glibc maps blocks over 32 MiB afresh on every call, and each 4 KiB page then faults on first
# touch. A block whose qkv or MLP activation would be larger runs in bands of rows of at most
# BAND_BYTES on the CPU in inference (see Block.forward).
_FRESH_MAPPING_BYTES = 32 * 2**20
BAND_BYTES = 12 * 2**20


def relative_position_table(rel_pos: torch.Tensor, size: int) -> torch.Tensor:
    """Look up the (size, size, head_dim) bias table for query/key offsets.

    ``rel_pos`` holds one learned vector per offset -(size-1)..(size-1).
    """
    if rel_pos.shape[0] != 2 * size - 1:
        # Weights trained at another resolution: resample the table linearly.
        rel_pos = F.interpolate(
            rel_pos.float().T[None], size=2 * size - 1, mode="linear"
        )[0].T.to(rel_pos.dtype)
    coords = torch.arange(size, device=rel_pos.device)
    offsets = coords[:, None] - coords[None, :] + (size - 1)
    return rel_pos[offsets]


class Attention(nn.Module):
    """Multi-head self-attention over a (B, H, W, C) token grid."""

    #: In bf16 on the CPU, compute attention over more than _SDPA_MAX_TOKENS_CPU_BF16 tokens (the global
    #: blocks) in float32: faster on CPUs without AMX (set per machine, see attention_choice.py).
    float32_global_attention = False

    def __init__(self, dim: int, num_heads: int, input_size: tuple[int, int], use_rel_pos: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(self.project_qkv(x)))

    def project_qkv(self, x: torch.Tensor) -> torch.Tensor:
        # Through the fused CPU kernel: nn.Linear's addmm first copies the bias
        # into a fresh (tokens, 3C) output, a full extra pass per block.
        return apply_linear(self.qkv, x)

    def _tables(self, H: int, W: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The (H, H, hd) and (W, W, hd) bias tables, looked up once per size and dtype when not training.

        The lookup (an index of a tiny table) took ~2 % of a vit_b embedding
        in bf16 on a 2-core CPU, done twice in each of 12 blocks per image.
        The key holds the weights' version counters, so loading other weights
        (load_state_dict, .to()) makes a new entry.
        """
        if torch.is_grad_enabled() and self.rel_pos_h.requires_grad:
            return (relative_position_table(self.rel_pos_h, H).to(dtype), relative_position_table(self.rel_pos_w, W).to(dtype))
        key = (H, W, dtype, self.rel_pos_h.device, self.rel_pos_h.data_ptr(), self.rel_pos_h._version, self.rel_pos_w._version)
        # One entry, replaced whole: a thread embedding beside another (a
        # predictor's twin shares this module) reads either the old or the new pair.
        cached = self.__dict__.get("_table_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.inference_mode(False), torch.no_grad():
            tables = (
                relative_position_table(self.rel_pos_h.detach(), H).to(dtype),
                relative_position_table(self.rel_pos_w.detach(), W).to(dtype),
            )
        self.__dict__["_table_cache"] = (key, tables)
        return tables

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3C) projected queries/keys/values -> (B, H, W, C), before ``proj``."""
        B, H, W, C3 = qkv.shape
        C = C3 // 3
        qkv = qkv.reshape(B, H * W, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = self._attend_with_rel_pos(q, k, v, H, W)
        return out.transpose(1, 2).reshape(B, H, W, C)

    def _attend_with_rel_pos(self, q, k, v, H: int, W: int) -> torch.Tensor:
        """SDPA with the decomposed relative-position bias as its additive mask.

        The bias of query i for key j is q_i . R_h[dy] + q_i . R_w[dx] (the
        unscaled query, as SAM defines it): two small tables per query,
        (N, H) and (N, W), broadcast into (N, H * W) for one block of query
        rows at a time.
        """
        B, heads, N, hd = q.shape
        if (self.float32_global_attention and q.dtype == torch.bfloat16 and q.device.type == "cpu"
                and N > _SDPA_MAX_TOKENS_CPU_BF16 and not torch.is_grad_enabled()):
            return self._attend_with_rel_pos(q.float(), k.float(), v.float(), H, W).to(q.dtype)
        table_h, table_w = self._tables(H, W, q.dtype)  # (H, H, hd), (W, W, hd)
        grid = q.reshape(B, heads, H, W, hd)
        bias_h = torch.einsum("bnhwc,hkc->bnhwk", grid, table_h).reshape(B, heads, N, H, 1)
        bias_w = torch.einsum("bnhwc,wkc->bnhwk", grid, table_w).reshape(B, heads, N, 1, W)
        if torch.is_grad_enabled() and (q.requires_grad or table_h.requires_grad):
            # Training: out= and in-place kernels have no gradient, so plain
            # differentiable products; the fused kernel with a float mask was
            # no faster in float32 and slower in bf16 (2-core AVX512-BF16 CPU).
            logits = torch.matmul(q * hd**-0.5, k.transpose(-1, -2)).view(B, heads, N, H, W)
            logits = (logits + bias_h + bias_w).view(B, heads, N, N)
            return torch.matmul(torch.softmax(logits, dim=-1), v)
        if q.device.type == "cpu" and q.dtype == torch.bfloat16 and N > _SDPA_MAX_TOKENS_CPU_BF16:
            return _attend_folded(q, k, v, bias_h, bias_w)
        rows = max(1, min(N, _MAX_BIAS_BYTES // (B * heads * N * q.element_size())))
        if _QUERY_ROWS < rows < N:
            rows -= rows % _QUERY_ROWS
        if rows >= N and q.device.type == "cpu" and q.dtype == torch.bfloat16:
            # The windows in bf16: the mask is bias_h[i, row(j)] + bias_w[i, col(j)],
            # a product of the two tables with a one-hot of each key's row and
            # column. The matrix kernel writes it about twice as fast as the
            # broadcast add (whose inner loop is only 14 wide), with the same
            # values: each entry is one sum of two numbers, rounded once.
            tables = torch.cat([bias_h.view(B, heads, N, H), bias_w.view(B, heads, N, W)], dim=-1)
            mask = torch.matmul(tables, _row_col_one_hot(H, W, q.dtype, q.device).T)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        mask = torch.empty(B, heads, rows, H, W, dtype=q.dtype, device=q.device)
        if rows >= N:
            torch.add(bias_h, bias_w, out=mask)
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.view(B, heads, N, N))
        out = torch.empty_like(q)
        for start in range(0, N, rows):
            stop = min(N, start + rows)
            block = mask[:, :, : stop - start]
            # out= keeps the sum contiguous in (rows, H, W) order, so the view
            # below is free (a broadcast add may otherwise pick another layout).
            torch.add(bias_h[:, :, start:stop], bias_w[:, :, start:stop], out=block)
            out[:, :, start:stop] = F.scaled_dot_product_attention(
                q[:, :, start:stop], k, v, attn_mask=block.view(B, heads, stop - start, N)
            )
        return out


def _row_col_one_hot(H: int, W: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(H * W, H + W): for each token of an H x W grid, a one-hot of its row, then of its column."""
    tokens = torch.arange(H * W, device=device)
    one_hot = torch.zeros(H * W, H + W, dtype=dtype, device=device)
    one_hot[tokens, tokens // W] = 1
    one_hot[tokens, H + tokens % W] = 1
    return one_hot


def _attend_folded(q, k, v, bias_h, bias_w) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + bias) v with the bias folded into the product, through SDPA without a mask.

    The bias of query i for key j is bias_h[i, row(j)] + bias_w[i, column(j)].
    That is a product too: append bias_h[i] and bias_w[i] to query i, and to
    key j a one-hot of its row and of its column, and q' . k' is the scaled
    score plus the bias. The fused kernel then never writes the (N, N) scores
    out, and computes the softmax in float32. Values are padded to the same
    width (the kernel needs one head size); the padding's outputs are dropped.
    Measured for one vit_b global attention in bf16 on a 2-core AMX CPU: 0.48 s
    against 0.98 s for plain matmuls with the bias added (the fused kernel
    with a float mask was slower still), with a third of their error against
    float32. In float32 it did not pay (0.92 s -> 1.05 s), so it is used for bf16.
    """
    B, heads, N, hd = q.shape
    H, W = bias_h.shape[-2], bias_w.shape[-1]
    one_hot = _row_col_one_hot(H, W, q.dtype, q.device)
    queries = torch.cat([q * hd**-0.5, bias_h.reshape(B, heads, N, H), bias_w.reshape(B, heads, N, W)], dim=-1)
    keys = torch.cat([k, one_hot.expand(B, heads, N, H + W)], dim=-1)
    values = F.pad(v, (0, H + W))
    return F.scaled_dot_product_attention(queries, keys, values, scale=1.0)[..., :hd]


def window_partition(x: torch.Tensor, window: int, fill: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """Cut (B, H, W, C) into (B * nWindows, window, window, C), padding the edge.

    Padding is zeros, or the vector ``fill`` (C,) where given.
    """
    B, H, W, C = x.shape
    pad_h, pad_w = (-H) % window, (-W) % window
    if pad_h or pad_w:
        if fill is None:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        else:
            padded = fill.to(x.dtype).expand(B, H + pad_h, W + pad_w, C).clone()
            padded[:, :H, :W] = x
            x = padded
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window, window, Wp // window, window, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, C), (Hp, Wp)


def window_unpartition(windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`, dropping the padding."""
    Hp, Wp = padded
    H, W = size
    B = windows.shape[0] // ((Hp // window) * (Wp // window))
    x = windows.view(B, Hp // window, Wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    return x[:, :H, :W, :]


class Block(nn.Module):
    """Transformer block: (windowed or global) attention then an MLP, both residual."""

    def __init__(self, dim: int, num_heads: int, window_size: int, grid_size: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window_size = window_size
        attn_size = window_size if window_size > 0 else grid_size
        self.norm1 = LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, (attn_size, attn_size))
        self.norm2 = LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self._band_rows(x)
        if rows is None:
            return self._forward(x)
        # Bands of whole window rows (windowed blocks) or of token rows (the MLP of global
        # blocks) on the CPU: fp32 activations of vit_b at 1024 px are 36-48 MiB, which glibc
        # maps afresh, page by page, on every call (40k page faults per windowed block, about
        # 5 % of an embedding); bands of at most BAND_BYTES reuse freed heap memory. Windows
        # and MLP tokens are independent, so the numbers are the same.
        out = torch.empty_like(x)
        if self.window_size > 0:
            for r0 in range(0, x.shape[1], rows):
                out[:, r0 : r0 + rows] = self._forward(x[:, r0 : r0 + rows])
            return out
        y = self._attention(x)
        for r0 in range(0, x.shape[1], rows):
            out[:, r0 : r0 + rows] = self._mlp(y[:, r0 : r0 + rows])
        return out

    def _band_rows(self, x: torch.Tensor) -> int | None:
        """Token rows per band, or None for the whole grid at once (it is small, or training, or not on the CPU)."""
        if x.device.type != "cpu" or (torch.is_grad_enabled() and x.requires_grad) or self.training:
            return None
        B, H, W, C = x.shape
        widest = B * W * max(3 * C, self.mlp.lin1.out_features) * x.element_size()  # per token row, qkv or MLP
        if H * widest <= _FRESH_MAPPING_BYTES:
            # Served from the heap: bands would only make smaller, slower products (vit_b in bf16:
            # 8.29 -> 8.53 s in bands, one thread, 2-core EPYC).
            return None
        rows = max(1, BAND_BYTES // widest)
        if self.window_size > 0:  # whole window rows, so that every window stays whole
            rows = self.window_size * max(1, rows // self.window_size)
        return None if rows >= H else rows

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._mlp(self._attention(x))

    def _attention(self, x: torch.Tensor) -> torch.Tensor:
        """x + proj(attention(norm1(x)))."""
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            # SAM zero-pads the normalised tokens to whole windows; a zero token
            # projects to exactly the qkv bias. So we project the real tokens
            # only, pad the projections with that bias, and drop the padding
            # before the output projection: the same numbers, ~16 % fewer
            # projections for a 64x64 grid in 14x14 windows.
            H, W = x.shape[1:3]
            qkv = self.attn.project_qkv(x)
            windows, padded = window_partition(qkv, self.window_size, fill=self.attn.qkv.bias)
            x = window_unpartition(self.attn.attend(windows), self.window_size, padded, (H, W))
        else:
            x = self.attn.attend(self.attn.project_qkv(x))
        # Output projection + residual, then the MLP (+ GELU, + residual): on
        # the CPU the GELU and the adds run inside the linear kernels.
        return apply_linear(self.attn.proj, x.contiguous(), add=shortcut.contiguous())

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        """x + MLP(norm2(x))."""
        mlp = self.mlp
        hidden = apply_linear(mlp.lin1, self.norm2(x), gelu=True)
        return apply_linear(mlp.lin2, hidden, add=x)


class PatchEmbed(nn.Module):
    """Non-overlapping patch x patch convolution: image -> (B, H/p, W/p, C) tokens."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoderViT(nn.Module):
    """SAM's ViT encoder: (B, 3, S, S) normalised image -> (B, out_chans, S/p, S/p)."""

    def __init__(
        self,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        window_size: int = 14,
        global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11),
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"image size {img_size} is not a multiple of the patch size {patch_size}")
        bad = [i for i in global_attn_indexes if not 0 <= i < depth]
        if bad:
            raise ValueError(f"global attention block indexes {bad} are outside 0..{depth - 1}")
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(
                embed_dim,
                num_heads,
                window_size=0 if i in global_attn_indexes else window_size,
                grid_size=grid,
                mlp_ratio=mlp_ratio,
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x) + self.pos_embed.to(x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
