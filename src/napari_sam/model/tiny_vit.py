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
where oneDNN can do that (see "Fused CPU kernels" below). The whole encoder also
runs after ``.to(torch.bfloat16)`` with bf16 input; LayerNorms then still
normalise in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from napari_sam.model.common import LayerNorm, LayerNorm2d
from napari_sam.model.fused import conv2d, linear

__all__ = ["TinyViT"]

# Patch embedding /4, then stage 0 -> 1 and 1 -> 2 each /2; 2 -> 3 keeps the size.
_TOTAL_STRIDE = 16
_NUM_STAGES = 4


class _DerivedTensorCache:
    """Holds one tensor computed from parameters until those parameters change.

    A change is seen through each source tensor's storage address, in-place
    version counter and dtype/device, which covers ``load_state_dict`` (copies
    in place), ``.to(...)`` (new storage) and in-place edits. The sources are
    referenced while cached so that a freed storage address cannot be reused by
    a different tensor that would look identical.
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        # (key, sources, value) in one attribute, replaced in one assignment,
        # so that a reader in another thread never pairs a key with a stale value.
        self._entry: tuple | None = None

    def get(self, sources: Sequence[torch.Tensor], compute: Callable, extra: tuple = ()):
        if torch.is_grad_enabled() and any(s.requires_grad for s in sources):
            # Gradients must reach the parameters: never hand out a detached copy.
            return compute()
        try:
            key = tuple((s.data_ptr(), s._version, s.dtype, s.device) for s in sources) + extra
        except RuntimeError:
            # Tensors made under torch.inference_mode() have no version counter,
            # so a change could not be noticed: compute afresh each time.
            return compute()
        entry = self._entry
        if entry is None or entry[0] != key:
            with torch.no_grad():
                entry = (key, tuple(s.detach() for s in sources), compute())
            self._entry = entry
        return entry[2]


class ConvBatchNorm(nn.Module):
    """A bias-free convolution followed by BatchNorm (keys ``c.*`` and ``bn.*``).

    In eval mode the BatchNorm is an affine map per output channel, so it is
    folded into the convolution weights once and the pair runs as a single
    convolution with a bias: one pass over the activations instead of two.
    """

    def __init__(
        self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride, padding=kernel_size // 2, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chans)
        self._folded = _DerivedTensorCache()

    def train(self, mode: bool = True):
        self._folded.clear()
        return super().train(mode)

    def _fold(self) -> tuple[torch.Tensor, torch.Tensor]:
        # Fold in float32 even for a bf16 module: the 1/sqrt(var) would lose
        # precision in bf16, and it costs nothing here.
        bn = self.bn
        scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
        weight = self.c.weight.float() * scale[:, None, None, None]
        bias = bn.bias.float() - bn.running_mean.float() * scale
        dtype = self.c.weight.dtype
        return weight.to(dtype), bias.to(dtype)

    def folded_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.bn
        sources = (self.c.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        return self._folded.get(sources, self._fold)

    def forward(self, x: torch.Tensor, *, gelu: bool = False, add: torch.Tensor | None = None) -> torch.Tensor:
        """conv + BN, then ``+ add`` if given, then GELU if asked."""
        if self.training:
            # Batch statistics: BatchNorm must run as its own layer.
            y = self.bn(self.c(x))
            if add is not None:
                y = y + add
            return F.gelu(y) if gelu else y
        weight, bias = self.folded_weight_and_bias()
        c = self.c
        return conv2d(x, weight, bias, c.stride[0], c.padding[0], c.groups, gelu=gelu, add=add)


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: image (S) -> features at S/4."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        # Index 1 is the activation, which has no parameters; it is kept so that
        # the keys read seq.0 / seq.2, but applied inside seq.0's convolution.
        self.seq = nn.Sequential(
            ConvBatchNorm(in_chans, embed_dim // 2, 3, stride=2),
            nn.GELU(),
            ConvBatchNorm(embed_dim // 2, embed_dim, 3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq[2](self.seq[0](x, gelu=True))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, + input."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBatchNorm(dim, hidden, 1)
        self.conv2 = ConvBatchNorm(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBatchNorm(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x, gelu=True)
        y = self.conv2(y, gelu=True)
        return self.conv3(y, add=x, gelu=True)


class PatchMerging(nn.Module):
    """Change the width between stages: 1x1, depthwise 3x3 (stride 1 or 2), 1x1."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBatchNorm(dim, out_dim, 1)
        self.conv2 = ConvBatchNorm(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBatchNorm(out_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x, gelu=True)
        x = self.conv2(x, gelu=True)
        return self.conv3(x)


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
        self._bias = _DerivedTensorCache()

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

        qkv = linear(self.norm(windows), self.qkv.weight, self.qkv.bias)
        qkv = qkv.view(n_windows, n_tokens, self.num_heads, 3, self.head_dim)
        # (windows, heads, tokens, head_dim) views; SDPA takes them as they are.
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.attention_bias(q.dtype))
        out = out.transpose(1, 2).reshape(n_windows, n_tokens, dim)
        # The residual is added while still in window order (padding included;
        # it is dropped when going back to the image).
        out = linear(out, self.proj.weight, self.proj.bias, add=windows)
        return windows_to_image(out, batch, height, width)


class FeedForward(nn.Module):
    """LayerNorm, then the two-layer GELU MLP of a transformer block; adds its input back."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x + MLP(x)."""
        hidden = linear(self.norm(x), self.fc1.weight, self.fc1.bias, gelu=True)
        return linear(hidden, self.fc2.weight, self.fc2.bias, add=x)


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


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks, then patch merging; NCHW (channels_last) in and out."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, out_dim: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = PatchMerging(dim, out_dim, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x)


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
