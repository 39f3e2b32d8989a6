"""Small building blocks shared by the encoders and the decoder."""

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.LayerNorm):
    """LayerNorm that always normalises in float32.

    Under bf16 the mean/variance of a 768- or 1280-wide token loses enough
    precision to change masks. PyTorch's kernels accept a bf16/fp16 input with
    float32 weights and then compute the statistics in float32 ("mixed type"),
    which is also much faster than upcasting a copy; where a backend lacks
    that, we upcast and cast the result back.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        if x.dtype in (torch.bfloat16, torch.float16):
            try:
                return F.layer_norm(x, self.normalized_shape, weight, bias, self.eps)
            except RuntimeError:
                pass
        y = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return y.to(x.dtype)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor, in float32."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            # Channels-last (the encoders' necks: their convolutions keep the
            # token layout): each pixel's channels are adjacent, so this is a
            # plain LayerNorm over the last axis of the (B, H, W, C) view, one
            # fused pass with float32 statistics instead of six passes over a
            # float32 copy (about 1.5 % of a vit_b embedding in bf16).
            try:
                y = F.layer_norm(
                    x.permute(0, 2, 3, 1), (x.shape[1],), self.weight.float(), self.bias.float(), self.eps
                )
                return y.permute(0, 3, 1, 2).to(x.dtype)
            except RuntimeError:
                pass  # a backend without mixed-type LayerNorm: the general path below
        xf = x.float()
        mean = xf.mean(1, keepdim=True)
        var = (xf - mean).pow(2).mean(1, keepdim=True)
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        y = y * self.weight.float()[:, None, None] + self.bias.float()[:, None, None]
        return y.to(x.dtype)


class MLPBlock(nn.Module):
    """Two linear layers with an activation between (the transformer MLP)."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """A stack of linear layers with ReLU between them (the decoder heads)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x
