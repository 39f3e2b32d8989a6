"""TinyViT: the small image encoder of MobileSAM (the ``vit_t`` model).

It turns a normalised (B, 3, S, S) image into a (B, 256, S/16, S/16) image
embedding, the same thing the big ViT encoders of SAM produce, at a small
fraction of their cost. The network has four stages:

* a patch embedding (two stride-2 convolutions, S -> S/4),
* stage 0: inverted-residual convolution blocks ("MBConv") at S/4,
* stages 1-3: transformer blocks that attend inside square windows, with a
  learned bias per relative offset inside the window, at S/8, S/16, S/16,
* a "neck" that maps the last stage to the 256 channels the mask decoder wants.

Between stages a convolutional "patch merging" changes the width and halves the
resolution, except in front of the last stage, where it keeps it (MobileSAM
changed that stride so that the embedding is S/16, like SAM's).

The parameter names and shapes are exactly MobileSAM's, so ``mobile_sam.pt``
(keys prefixed ``image_encoder.``) loads with ``strict=True``; the unused
classification head (``norm_head``, ``head``) is kept for that reason only.

Layout and speed (inference on a CPU): features travel between blocks as
channels-last tensors, (B, H, W, C) for the transformer and the NCHW
``channels_last`` view of the same memory for the convolutions, so that
switching between linear layers and convolutions never copies. In eval mode
every convolution has its BatchNorm folded into its weights and every attention
layer keeps its gathered (heads, N, N) bias; both are remembered until the
parameters they were made from change (or the module goes back to train()).
GELU and residual additions ride along inside the convolution / linear kernels
where oneDNN can do that (:mod:`.fused`). The whole encoder also runs after
``.to(torch.bfloat16)`` with bf16 input; LayerNorms then still normalise in
float32.

The convolution parts live in :mod:`.tiny_vit_conv`, the windowed attention
stages in :mod:`.tiny_vit_attention`; this module puts them together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from napari_sam.model.common import LayerNorm, LayerNorm2d
from napari_sam.model.fused import linear
from napari_sam.model.tiny_vit_attention import (
    TransformerStage,
    image_to_windows,
    relative_offset_index,
    windows_to_image,
)
from napari_sam.model.tiny_vit_conv import ConvStage, PatchEmbed

# The window helpers are imported from here by callers (and the tests) as before.
__all__ = ["TinyViT", "image_to_windows", "relative_offset_index", "windows_to_image"]

# Patch embedding /4, then stage 0 -> 1 and 1 -> 2 each /2; 2 -> 3 keeps the size.
_TOTAL_STRIDE = 16
_NUM_STAGES = 4


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def _check_stage_list(name: str, values) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"{name} must be a sequence of {_NUM_STAGES} ints, got {type(values).__name__}")
    if len(values) != _NUM_STAGES:
        raise ValueError(f"{name} must have one entry per stage ({_NUM_STAGES}), got {len(values)}")
    return tuple(_check_positive_int(f"{name}[{i}]", v) for i, v in enumerate(values))


class TinyViT(nn.Module):
    """MobileSAM's image encoder.

    Valid sizes: ``img_size`` must be a positive multiple of 16 (the encoder
    halves the resolution four times with stride-2 convolutions and returns
    ``img_size // 16``); any window size works, since windows are padded.
    ``embed_dims[0]`` must be even (the patch embedding's first convolution has
    half its width) and ``embed_dims[i]`` divisible by ``num_heads[i]`` for the
    transformer stages 1-3 (``num_heads[0]`` is unused: stage 0 is convolutional).

    The defaults are MobileSAM's ``vit_t``. Inference only: there is no
    drop-path or gradient checkpointing.
    """

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        img_size = _check_positive_int("img_size", img_size)
        if img_size % _TOTAL_STRIDE:
            raise ValueError(f"img_size must be a multiple of {_TOTAL_STRIDE}, got {img_size}")
        in_chans = _check_positive_int("in_chans", in_chans)
        out_chans = _check_positive_int("out_chans", out_chans)
        embed_dims = _check_stage_list("embed_dims", embed_dims)
        depths = _check_stage_list("depths", depths)
        num_heads = _check_stage_list("num_heads", num_heads)
        window_sizes = _check_stage_list("window_sizes", window_sizes)
        local_conv_size = _check_positive_int("local_conv_size", local_conv_size)
        num_classes = _check_positive_int("num_classes", num_classes)
        if embed_dims[0] % 2:
            raise ValueError(f"embed_dims[0] must be even, got {embed_dims[0]}")
        for i in range(1, _NUM_STAGES):
            if embed_dims[i] % num_heads[i]:
                raise ValueError(
                    f"embed_dims[{i}] ({embed_dims[i]}) must be divisible by num_heads[{i}] ({num_heads[i]})"
                )
        if local_conv_size % 2 == 0:
            raise ValueError(f"local_conv_size must be odd to keep the size, got {local_conv_size}")
        for name, ratio in (("mlp_ratio", mlp_ratio), ("mbconv_expand_ratio", mbconv_expand_ratio)):
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(ratio).__name__}")
            if not math.isfinite(ratio) or ratio <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {ratio}")

        self.img_size = img_size
        self.in_chans = in_chans
        self.out_chans = out_chans
        self.embed_size = img_size // _TOTAL_STRIDE

        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        stages: list[nn.Module] = [
            ConvStage(embed_dims[0], depths[0], mbconv_expand_ratio, embed_dims[1], stride=2)
        ]
        for i in range(1, _NUM_STAGES):
            last = i == _NUM_STAGES - 1
            stages.append(
                TransformerStage(
                    embed_dims[i],
                    depths[i],
                    num_heads[i],
                    window_sizes[i],
                    mlp_ratio,
                    local_conv_size,
                    out_dim=None if last else embed_dims[i + 1],
                    # MobileSAM keeps the resolution into the last stage.
                    stride=1 if i == _NUM_STAGES - 2 else 2,
                )
            )
        self.layers = nn.ModuleList(stages)

        # ImageNet classification head of TinyViT: unused by SAM, kept so that
        # checkpoints load strictly.
        self.norm_head = LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)

        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"TinyViT expects a torch.Tensor, got {type(x).__name__}")
        expected = (self.in_chans, self.img_size, self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"TinyViT expects images of shape (B, {expected[0]}, {expected[1]}, {expected[2]}), "
                f"got {tuple(x.shape)}"
            )
        if x.shape[0] == 0:
            raise ValueError("TinyViT got an empty batch (B = 0)")
        weight_dtype = self.neck[0].weight.dtype
        if x.dtype != weight_dtype:
            raise TypeError(f"input dtype {x.dtype} does not match the encoder's weights ({weight_dtype})")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, S, S) normalised image -> (B, out_chans, S/16, S/16) embedding."""
        self._check_input(x)
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        x = self.layers[0](x).permute(0, 2, 3, 1)
        for stage in self.layers[1:]:
            x = stage(x)
        return self._apply_neck(x).contiguous()

    def _apply_neck(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) last-stage features -> (B, out_chans, H, W)."""
        project, norm1, conv, norm2 = self.neck
        # The 1x1 convolution is a linear layer on channels-last tokens.
        x = linear(x, project.weight.flatten(1), None).permute(0, 3, 1, 2)
        return norm2(conv(norm1(x)))
