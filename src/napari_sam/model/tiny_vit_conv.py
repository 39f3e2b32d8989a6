"""The convolution side of TinyViT: patch embedding, MBConv blocks and patch merging.

Convolutions take NCHW tensors in ``channels_last`` memory (the transformer
stages see the same memory as (B, H, W, C), so switching never copies). In
eval mode each convolution's BatchNorm is folded into its weights once and
remembered until the parameters change (:class:`DerivedTensorCache`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from napari_sam.model.fused import conv2d


class DerivedTensorCache:
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
        self._folded = DerivedTensorCache()

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
        first, second = self.seq[0], self.seq[2]
        # The first convolution's output (32 MiB at 1024 px in float32) is only read by the
        # second: made a strip at a time it never needs a fresh mapping (see STRIP_BYTES).
        strips = None if self.training else pair_strips(first, second, x)
        if strips is None:
            return second(first(x, gelu=True))
        return pair_in_strips(first, second, x, strips, first_gelu=True)


#: Largest hidden activation (bytes) an MBConv block computes in one piece in
#: eval mode; above it the block runs in strips of rows. glibc serves blocks
#: over 32 MiB with a fresh mmap, whose every 4 KiB page faults on first
#: touch: a new 64 MiB tensor cost 28-36 ms against 2.5 ms to fill an existing
#: one (2-core EPYC), and stage 0 at 1024x1024 makes four 64 MiB hidden
#: tensors. Strips below the limit reuse freed heap memory (and stay in cache).
STRIP_BYTES = 8 * 2**20


def row_strips(height: int, rows: int) -> list[tuple[int, int]]:
    """[(start, stop), ...] covering 0..height in runs of ``rows`` (the last may be shorter)."""
    return [(r, min(r + rows, height)) for r in range(0, height, rows)]


def rows_per_strip(x: torch.Tensor, height: int, hidden_row_bytes: int) -> int | None:
    """Rows per strip so that no hidden tensor exceeds STRIP_BYTES, or None to compute in one piece.

    One piece where it fits, and off the CPU: a GPU's allocator keeps its
    memory, so strips would only add kernel launches.
    """
    rows = max(1, STRIP_BYTES // hidden_row_bytes)
    if rows >= height or x.device.type != "cpu":
        return None
    return rows


def _input_rows(conv: ConvBatchNorm, r0: int, r1: int, height: int) -> tuple[int, int, int, int]:
    """The input rows [lo, hi) that output rows [r0, r1) of ``conv`` read, clipped to the image,
    and the zero rows its padding adds above and below them."""
    k, stride, pad = conv.c.kernel_size[0], conv.c.stride[0], conv.c.padding[0]
    lo, hi = stride * r0 - pad, stride * (r1 - 1) - pad + k
    return max(lo, 0), min(hi, height), max(0, -lo), max(0, hi - height)


def _conv_on_rows(conv: ConvBatchNorm, rows: torch.Tensor, above: int, below: int, *, gelu: bool) -> torch.Tensor:
    """``conv`` (eval) on the input rows one strip of its output needs: the vertical padding is
    ``above``/``below`` zero rows where the strip meets the image's edge, and nothing inside it."""
    if above or below:
        rows = F.pad(rows, (0, 0, above, below))  # keeps channels_last
    c = conv.c
    weight, bias = conv.folded_weight_and_bias()
    return conv2d(rows, weight, bias, c.stride[0], (0, c.padding[0]), c.groups, gelu=gelu)


def pair_strips(first: ConvBatchNorm, second: ConvBatchNorm, x: torch.Tensor) -> int | None:
    """Output rows of ``second`` per strip when second(first(x)) runs in strips, or None for one piece."""
    k, stride, pad = first.c.kernel_size[0], first.c.stride[0], first.c.padding[0]
    width = (x.shape[3] + 2 * pad - k) // stride + 1
    # A strip of the second's rows reads about stride-of-second rows of the first's output each.
    hidden_row_bytes = second.c.stride[0] * first.c.out_channels * width * x.element_size()
    height = (x.shape[2] + 2 * pad - k) // stride + 1
    k2, s2, p2 = second.c.kernel_size[0], second.c.stride[0], second.c.padding[0]
    return rows_per_strip(x, (height + 2 * p2 - k2) // s2 + 1, hidden_row_bytes)


def pair_in_strips(first: ConvBatchNorm, second: ConvBatchNorm, x: torch.Tensor, rows: int, *,
                   first_gelu: bool, second_gelu: bool = False, then: Callable | None = None) -> torch.Tensor:
    """then(second(first(x))), ``rows`` output rows at a time: the same numbers as in one piece.

    Each strip of the second convolution's output is made from the rows of the
    first's output it reads (its halo included), and those from the input rows
    they read; zero rows stand in for the padding only at the image's edges.
    ``then`` is a per-pixel step (a 1x1 convolution) applied to each strip.
    """
    k, stride, pad = first.c.kernel_size[0], first.c.stride[0], first.c.padding[0]
    mid_height = (x.shape[2] + 2 * pad - k) // stride + 1
    k2, s2, p2 = second.c.kernel_size[0], second.c.stride[0], second.c.padding[0]
    height = (mid_height + 2 * p2 - k2) // s2 + 1
    pieces = []
    for i in range(x.shape[0]):
        image = x[i : i + 1]
        for r0, r1 in row_strips(height, rows):
            m0, m1, above, below = _input_rows(second, r0, r1, mid_height)
            i0, i1, in_above, in_below = _input_rows(first, m0, m1, x.shape[2])
            mid = _conv_on_rows(first, image[:, :, i0:i1], in_above, in_below, gelu=first_gelu)
            strip = _conv_on_rows(second, mid, above, below, gelu=second_gelu)
            pieces.append((i, r0, r1, strip if then is None else then(strip)))
    _, _, _, last = pieces[-1]
    out = torch.empty((x.shape[0], last.shape[1], height, last.shape[3]), dtype=last.dtype, device=last.device,
                      memory_format=torch.channels_last)
    for i, r0, r1, strip in pieces:
        out[i : i + 1, :, r0:r1] = strip
    return out


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depthwise, 1x1 project, + input."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBatchNorm(dim, hidden, 1)
        self.conv2 = ConvBatchNorm(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBatchNorm(hidden, dim, 1)

    def _block(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x, gelu=True)
        y = self.conv2(y, gelu=True)
        return self.conv3(y, add=x, gelu=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, height, width = x.shape
        rows = rows_per_strip(x, height, self.conv1.c.out_channels * width * x.element_size())
        # Training normalises with batch statistics, which strips would change.
        if self.training or rows is None:
            return self._block(x)
        return self._in_strips(x, rows)

    def _in_strips(self, x: torch.Tensor, rows: int) -> torch.Tensor:
        """The block, ``rows`` output rows at a time (same result as in one piece).

        Each strip's hidden rows reach one row beyond it on each side (the
        depthwise 3x3 needs them); their own depthwise outputs, which see zero
        padding instead of the real neighbours, are dropped. At the image's
        edges the zero padding is the real one.
        """
        height = x.shape[2]
        out = torch.empty_like(x)
        # One image at a time: a row range of one image is dense channels_last
        # memory, what the fused kernels want.
        for i in range(x.shape[0]):
            image = x[i : i + 1]
            for r0, r1 in row_strips(height, rows):
                a, b = max(r0 - 1, 0), min(r1 + 1, height)
                y = self.conv1(image[:, :, a:b], gelu=True)
                y = self.conv2(y, gelu=True)[:, :, r0 - a : r0 - a + r1 - r0]
                out[i : i + 1, :, r0:r1] = self.conv3(y, add=image[:, :, r0:r1], gelu=True)
        return out


class PatchMerging(nn.Module):
    """Change the width between stages: 1x1, depthwise 3x3 (stride 1 or 2), 1x1."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBatchNorm(dim, out_dim, 1)
        self.conv2 = ConvBatchNorm(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBatchNorm(out_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # After stage 0 the first 1x1 output is 32 MiB at 1024 px in float32 and read only by
        # the depthwise step: in strips it never needs a fresh mapping (see STRIP_BYTES).
        strips = None if self.training else pair_strips(self.conv1, self.conv2, x)
        if strips is not None:
            return pair_in_strips(self.conv1, self.conv2, x, strips, first_gelu=True, second_gelu=True,
                                  then=self.conv3)
        x = self.conv1(x, gelu=True)
        x = self.conv2(x, gelu=True)
        return self.conv3(x)


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
