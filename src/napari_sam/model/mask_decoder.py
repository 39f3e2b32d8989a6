"""Mask decoder: prompt tokens + image embedding become masks; a click becomes a mask here.

Four learned mask tokens and one IoU token are prepended to the prompt tokens.
After the two-way transformer, each mask token becomes (through a small MLP, a
"hypernetwork") the weights of a dot product with the upscaled image features:
one mask per token at 4x the embedding resolution (256x256 for SAM). Token 0
is the single-mask answer; tokens 1-3 are the three candidates for an
ambiguous prompt (part, object, whole). The IoU token predicts how good each
mask is.
"""

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    def __init__(
        self,
        transformer_dim: int = 256,
        transformer: nn.Module | None = None,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer if transformer is not None else TwoWayTransformer(embedding_dim=transformer_dim)
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        prepared: dict | None = None,
        iou_floor: float | None = None,
    ):
        """Return (low-res mask logits (B, M, 4h, 4w), IoU predictions (B, M)); M = 3 or 1.

        ``image_embeddings`` is (1, C, h, w) shared by all B prompts, or (B, C, h, w).
        ``prepared``: :meth:`prepare_image` of the same image and dense prompt.
        With ``iou_floor``, masks are made only for the prompts that have a
        candidate with predicted IoU above it (the generator drops the rest
        unseen): returns (logits of those prompts (K, M, 4h, 4w), IoU (B, M),
        their indices (K,)).
        """
        # Only the picked tokens' masks are made: the single-mask answer is
        # a quarter of the upscaled products when three candidates are asked.
        picked = slice(1, None) if multimask_output else slice(0, 1)
        out = self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                                 prepared, picked=picked, iou_floor=iou_floor)
        if iou_floor is None:
            return out[0], out[1][:, picked]
        return out[0], out[1][:, picked], out[2]

    def prepare_image(self, image_embeddings, image_pe, dense_prompt_embeddings) -> dict:
        """Prompt-independent work for one (1, C, h, w) image and dense prompt, reusable across clicks."""
        dtype = self.iou_token.weight.dtype
        src = image_embeddings.to(dtype) + dense_prompt_embeddings.to(dtype)
        return self.transformer.prepare_image(src, image_pe.to(dtype))

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, prepared=None,
                      picked: slice = slice(None), iou_floor: float | None = None):
        """The ``picked`` mask tokens' masks (B, M, 4h, 4w), all four by default, and all four IoU predictions (B, 4)."""
        B = sparse_prompt_embeddings.shape[0]
        dtype = self.iou_token.weight.dtype
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(B, -1, -1), sparse_prompt_embeddings.to(dtype)], dim=1)
        _, C, h, w = image_embeddings.shape

        if prepared is not None:
            hs, src = self.transformer(None, None, tokens, prepared=prepared)
        else:
            src = image_embeddings.to(dtype)
            if src.shape[0] != B:
                src = src.expand(B, -1, -1, -1)
            src = src + dense_prompt_embeddings.to(dtype)
            pos_src = image_pe.to(dtype).expand(B, -1, -1, -1)
            hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        iou_pred = self.iou_prediction_head(iou_token_out)
        rows = None
        if iou_floor is not None:
            # The IoU head needs only the transformer's tokens, so the upscaling (most of a
            # prompt's cost) is skipped for prompts whose every candidate is below the floor.
            rows = torch.nonzero((iou_pred[:, picked].float() > iou_floor).any(-1)).flatten()
            if len(rows) == 0:
                M = len(range(self.num_mask_tokens)[picked])
                return src.new_zeros((0, M, 4 * h, 4 * w)), iou_pred, rows
            if len(rows) < B:
                src, mask_tokens_out = src[rows], mask_tokens_out[rows]
        tokens_made = range(self.num_mask_tokens)[picked]
        hyper_in = torch.stack([self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in tokens_made], dim=1)
        masks = self._masks_from_tokens(src, hyper_in, h, w)
        if rows is None:
            return masks, iou_pred
        return masks, iou_pred, rows

    def _masks_from_tokens(self, src: torch.Tensor, hyper_in: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Upscale the image tokens 4x and take each mask token's dot product with them.

        ``output_upscaling`` is two 2x2 transposed convolutions with stride 2:
        kernels that never overlap, so each is a matrix product per token
        followed by a rearrangement of pixels. We do the products on the
        (B, h*w, C) tokens directly and rearrange only the final (B, M, 4h, 4w)
        masks, which is several times cheaper on the CPU than the convolution
        kernels and their layout copies, with the same numbers up to float
        rounding.
        """
        up1, norm, act1, up2, act2 = self.output_upscaling
        B, M = src.shape[0], hyper_in.shape[1]
        x = _token_deconv(src, up1)  # (B, h*w*4, C/4), sub-pixels (di, dj) of each token
        x = act1(F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps))
        x = act2(_token_deconv(x, up2))  # (B, h*w*16, C/8), sub-pixels (di, dj, ei, ej)
        # Pixels times mask weights, (B, h*w*16, M): multiplying this way round
        # reads the large pixel tensor as it lies in memory (the other way
        # copied it into a transposed layout first, 2x slower in bf16).
        masks = torch.matmul(x, hyper_in.transpose(1, 2)).transpose(1, 2).contiguous()
        # Each mask's pixels lie as (row, col, di, dj, ei, ej) of token and sub-pixels: its row is
        # 4 row + 2 di + ei. Two moves of blocks (di before col, then ei before col and dj) were 2.5x
        # faster than one 8-dimensional permutation (0.6 -> 0.24 ms at 1024 px, 2 cores, AVX2).
        masks = masks.view(B * M, h, w, 2, 2, 4).permute(0, 1, 3, 2, 4, 5).contiguous()
        masks = masks.view(B * M, 2 * h, 2 * w, 2, 2).permute(0, 1, 3, 2, 4)
        return masks.reshape(B, M, 4 * h, 4 * w)


def _token_deconv(tokens: torch.Tensor, deconv: nn.ConvTranspose2d) -> torch.Tensor:
    """A 2x2/stride-2 transposed convolution applied to (B, N, Cin) tokens -> (B, N*4, Cout).

    Output token 4n + 2di + dj is sub-pixel (di, dj) of input token n.
    """
    weight = deconv.weight  # (Cin, Cout, 2, 2)
    cin, cout = weight.shape[:2]
    flat = weight.permute(0, 2, 3, 1).reshape(cin, 4 * cout)
    bias = deconv.bias.repeat(4) if deconv.bias is not None else None
    out = F.linear(tokens, flat.t(), bias)  # (B, N, 4 * Cout)
    return out.reshape(tokens.shape[0], -1, cout)
