"""Prompt encoder: clicks, boxes and a previous mask become tokens for the decoder.

Points and box corners are encoded with random Fourier features of their
position (the Gaussian matrix is part of the checkpoint and must be loaded,
never redrawn) plus a learned vector saying what kind of prompt they are:
negative point (label 0), positive point (1), box top-left (2), box
bottom-right (3), or padding (-1). A dense mask prompt (low-res logits of a
previous prediction) is downscaled by a small conv net to the embedding grid.

The positional encoding always runs in float32: in bf16 a coordinate in a
1024-pixel image loses whole pixels.
"""

import math

import torch
from torch import nn

from .common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of normalised (x, y) positions."""

    def __init__(self, num_pos_feats: int = 128, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn(2, num_pos_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """coords in [0, 1], shape (..., 2) -> (..., 2 * num_pos_feats)."""
        coords = (2 * coords.float() - 1) @ self.positional_encoding_gaussian_matrix.float()
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of every cell centre of an (h, w) grid -> (C, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # (h, w, 2) as (x, y)
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode (B, N, 2) pixel coordinates (x, y) of an image of ``image_size`` (h, w)."""
        coords = coords.float().clone()
        coords[..., 0] = coords[..., 0] / image_size[1]
        coords[..., 1] = coords[..., 1] / image_size[0]
        return self._encode(coords)


class PromptEncoder(nn.Module):
    def __init__(
        self,
        embed_dim: int = 256,
        image_embedding_size: tuple[int, int] = (64, 64),
        input_image_size: tuple[int, int] = (1024, 1024),
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0 negative point, 1 positive point, 2 box top-left, 3 box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, (1, C, h, w)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        points = points.float() + 0.5  # pixel index -> pixel centre
        if pad:
            # Without a box the decoder was trained with one extra "not a point" token.
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == -1, self.not_a_point_embed.weight.float(), emb)
        emb = emb + torch.where(labels == 0, self.point_embeddings[0].weight.float(), 0.0)
        emb = emb + torch.where(labels == 1, self.point_embeddings[1].weight.float(), 0.0)
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        corners = boxes.float().reshape(-1, 2, 2) + 0.5
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_kind = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight]).float()
        return emb + corner_kind

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (sparse tokens (B, N, C), dense embedding (B, C, h, w)), in float32."""
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        device = self.no_mask_embed.weight.device
        sparse = [torch.empty(bs, 0, self.embed_dim, device=device)]
        if points is not None:
            sparse.append(self._embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self._embed_boxes(boxes))
        sparse = torch.cat(sparse, dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks.to(self.no_mask_embed.weight.dtype)).float()
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.float().reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
