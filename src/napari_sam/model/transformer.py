"""The two-way transformer inside the mask decoder.

Prompt tokens and image tokens attend to each other in both directions:
tokens read the image (token -> image), then the image reads the tokens
(image -> token), so both the masks' queries and the image features adapt to
the prompt. Cross attention runs at half width ("downsample rate" 2) to keep
the 4096 image tokens cheap.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm, MLPBlock


def times_shared(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a`` (B, H, M, K) times ``b`` (1 or B, H, K, N) -> (B, H, M, N), per head.

    When ``b`` is one image's (or the weights') side shared by B prompts,
    torch.matmul broadcasts it by copying it B times (1-2 ms per product for
    4096 image tokens on the CPU). Stacking the prompts' rows instead
    multiplies the one copy there is: the same products, no copy.
    """
    if b.shape[0] == 1 and a.shape[0] > 1:
        B, H, M, K = a.shape
        out = torch.matmul(a.transpose(0, 1).reshape(H, B * M, K), b[0])
        return out.view(H, B, M, -1).transpose(0, 1)
    return torch.matmul(a, b)


class Attention(nn.Module):
    """Attention with separate q/k/v projections, optionally at a reduced width."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(f"attention width {self.internal_dim} is not divisible by {num_heads} heads")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        return x.reshape(B, N, self.num_heads, C // self.num_heads).transpose(1, 2)

    def project_q(self, x):
        return self._heads(self.q_proj(x))

    def project_k(self, x):
        return self._heads(self.k_proj(x))

    def project_v(self, x):
        return self._heads(self.v_proj(x))

    def forward(self, q, k, v, *, projected: dict | None = None) -> torch.Tensor:
        """Attend q to (k, v). ``projected`` may hold already projected "q"/"k"/"v"
        (per-image work the predictor caches across prompts)."""
        projected = projected or {}
        if not torch.is_grad_enabled():
            # Inference: when one side holds only a few prompt tokens, fold the
            # projections of the image side into them (same numbers up to rounding).
            if self._cheaper_folded(few=q.shape[1], many=k.shape[1]) and "k" not in projected and "v" not in projected:
                return self.attend_few_queries(q, k, v, qh=projected.get("q"))
            if self._cheaper_folded(few=k.shape[1], many=q.shape[1]):
                return self.attend_few_keys(q, k, v, qh=projected.get("q"))
        return self.attend(q, k, v, projected=projected)

    def attend(self, q, k, v, *, projected: dict | None = None) -> torch.Tensor:
        """Attention as written: project q, k and v, attend per head, project out."""
        projected = projected or {}
        qh = projected["q"] if "q" in projected else self.project_q(q)
        kh = projected["k"] if "k" in projected else self.project_k(k)
        vh = projected["v"] if "v" in projected else self.project_v(v)
        # Plain products, not the fused kernel: one side of every attention here
        # has only a handful of tokens, so the weights are small; the products
        # broadcast one image over many prompts without copies; and in bf16 on
        # the CPU the fused kernel's backward pass took 3x longer (training).
        weights = torch.softmax(times_shared(qh * qh.shape[-1] ** -0.5, kh.transpose(-1, -2)), dim=-1)
        out = times_shared(weights, vh)
        B, H, N, D = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(B, N, H * D))

    # The image side of the decoder's cross attention has thousands of tokens
    # (4096 for a 1024-pixel input), the prompt side a handful (5 output tokens
    # plus the points and box corners). Projecting every image token to the
    # attention width costs N x C x width per projection. Because attention is
    # linear in the keys' and values' projections, the weights can instead be
    # multiplied into the few prompt tokens first: heads x tokens columns
    # instead of width, e.g. 8 x 7 = 56 instead of 128: less than half the
    # projections' work (a vit_b click at 512 px in bf16 on a 2-core CPU:
    # 25 -> 20 ms). The results equal :meth:`attend` up to float rounding
    # (tests/model/test_transformer_folding.py).
    def _cheaper_folded(self, few: int, many: int) -> bool:
        return few * self.num_heads < self.internal_dim and many > self.internal_dim

    def attend_few_queries(self, q, k, v, qh=None) -> torch.Tensor:
        """Few queries (tokens) reading many keys/values (image): the key and value
        projections are applied to the tokens' side of each product."""
        B, T, C = q.shape
        H, d = self.num_heads, self.internal_dim // self.num_heads
        if qh is None:
            qh = self.project_q(q)  # (B, H, T, d)
        # q . (W k + b) = (q W) . k + q . b; the last term is the same for every
        # key, so the softmax over keys does not see it.
        qk = times_shared(qh * d**-0.5, self.k_proj.weight.view(1, H, d, C)).reshape(B, H * T, C)
        # Scores as (image tokens) x (heads * tokens) products of the image as it
        # lies in memory, then turned so the softmax runs along the image axis;
        # reading the image transposed instead copied it (1 ms per call in bf16).
        scores = torch.matmul(k, qk.transpose(1, 2)).transpose(1, 2).contiguous()  # (B, H*T, N)
        weights = torch.softmax(scores, dim=-1)
        # weights . (W v + b) = W (weights . v) + b, as each row of weights sums to 1.
        read = torch.matmul(weights, v).view(B, H, T, C)
        out = times_shared(read, self.v_proj.weight.view(1, H, d, C).transpose(-1, -2)) + self.v_proj.bias.view(H, 1, d)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, H * d))

    def attend_few_keys(self, q, k, v, qh=None) -> torch.Tensor:
        """Many queries (image) reading few keys/values (tokens): the query and
        output projections are applied to the tokens' side. ``qh``: the queries
        already projected (then only the output projection is folded)."""
        B, N, C = q.shape
        T = k.shape[1]
        H, d = self.num_heads, self.internal_dim // self.num_heads
        kh, vh = self.project_k(k), self.project_v(v)  # (B, H, T, d)
        scale = d**-0.5
        # Scores are laid out (B, H, T, N): the softmax over a few tokens then
        # runs along a middle axis with the long image axis innermost, 2x faster
        # on the CPU than a softmax over a last axis of 5-10 entries.
        if qh is not None:
            scores = times_shared(kh * scale, qh.transpose(-1, -2))  # (B, H, T, N)
        else:
            # (W q + b) . k = q . (W^T k) + b . k
            folded = times_shared(kh * scale, self.q_proj.weight.view(1, H, d, C)).reshape(B, H * T, C)
            offset = (kh * self.q_proj.bias.view(1, H, 1, d)).sum(-1).reshape(B, H * T, 1) * scale
            if B == 1:  # a plain matrix product reads the image tokens as they lie in memory
                scores = F.linear(folded[0], q[0]).unsqueeze(0) + offset
            else:
                scores = torch.matmul(folded, q.transpose(1, 2)) + offset  # (B, H*T, N)
        weights = torch.softmax(scores.reshape(B, H, T, N), dim=-2).reshape(B, H * T, N)
        # Each head's values times its block of the output projection: (B, H*T, C_out).
        wo = self.out_proj.weight.view(-1, H, d).permute(1, 2, 0)  # (H, d, C_out)
        values_out = times_shared(vh, wo[None]).reshape(B, H * T, -1)
        if B == 1:  # as above; the two single-prompt products saved 8 % of a vit_b click (bf16)
            return torch.mm(weights[0].t(), values_out[0]).unsqueeze(0) + self.out_proj.bias
        return torch.matmul(weights.transpose(1, 2), values_out) + self.out_proj.bias


class TwoWayAttentionBlock(nn.Module):
    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int, skip_first_layer_pe: bool) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=2)
        self.norm2 = LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, nn.ReLU)
        self.norm3 = LayerNorm(embedding_dim)
        self.norm4 = LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate=2)
        # The first block sees tokens that already are positional encodings.
        self.skip_first_layer_pe = skip_first_layer_pe

    def image_only_projections(self, keys, key_pe) -> dict:
        """The projections of this block that depend on the image alone.

        Valid while ``keys`` are the block's input image tokens, i.e. for the
        first block when no mask prompt changes the image side.
        """
        k = keys + key_pe
        return {
            "token_to_image": {"k": self.cross_attn_token_to_image.project_k(k), "v": self.cross_attn_token_to_image.project_v(keys)},
            "image_to_token": {"q": self.cross_attn_image_to_token.project_q(k)},
        }

    def forward(self, queries, keys, query_pe, key_pe, cached: dict | None = None):
        cached = cached or {}
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        # With the image side's projections cached (the first block), k is only looked at for its shape:
        # not adding the positions to 4096 x 256 image tokens saves 0.4 ms of a click.
        k = keys if cached else keys + key_pe
        q = queries + query_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys, projected=cached.get("token_to_image")))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries, projected=cached.get("image_to_token")))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, skip_first_layer_pe=(i == 0))
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate=2)
        self.norm_final_attn = LayerNorm(embedding_dim)

    def prepare_image(self, image_embedding, image_pe) -> dict:
        """Per-image work that does not depend on the prompt tokens.

        With no mask prompt the decoder's image side is the same for every
        click on an image; the predictor computes this once per image and
        passes it to every ``forward`` (same numbers, less work per click).
        """
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        return {"keys": keys, "key_pe": key_pe, "first_layer": self.layers[0].image_only_projections(keys, key_pe)}

    def forward(self, image_embedding, image_pe, point_embedding, prepared: dict | None = None):
        """image_embedding/image_pe (B, C, h, w), point_embedding (B, N, C) -> (tokens, image tokens).

        ``prepared`` (from :meth:`prepare_image` of the same inputs) skips
        recomputing the image-only parts; the inputs are then not read.
        """
        if prepared is None:
            prepared = {
                "keys": image_embedding.flatten(2).transpose(1, 2),
                "key_pe": image_pe.flatten(2).transpose(1, 2),
                "first_layer": None,
            }
        keys, key_pe = prepared["keys"], prepared["key_pe"]
        B = point_embedding.shape[0]
        if keys.shape[0] != B:
            keys, key_pe = keys.expand(B, -1, -1), key_pe.expand(B, -1, -1)
        queries = point_embedding
        for i, layer in enumerate(self.layers):
            cached = prepared["first_layer"] if i == 0 else None
            queries, keys = layer(queries, keys, point_embedding, key_pe, cached=cached)
        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
