"""Linear and convolution layers with GELU / residual add fused in, on the CPU.

Shared by the image encoders. Plain PyTorch is the fallback everywhere.
"""

import functools

import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------
# Fused CPU kernels.
#
# oneDNN, the CPU backend PyTorch ships, can apply GELU or add a residual while
# a convolution or linear layer writes its output. That saves one full pass over
# the largest activations (the 256-channel MBConv features at S/4 are 64 MiB in
# float32 for a 1024 image) and GELU becomes almost free. PyTorch exposes these
# kernels as torch.ops.mkldnn._convolution_pointwise / _linear_pointwise (what
# torch.compile emits on CPU). They are not public API, so they are checked
# once per dtype against the plain computation and avoided when missing,
# failing or different. Plain PyTorch ops are the fallback, and the only path
# when gradients are needed (the fused kernels have no backward).
# --------------------------------------------------------------------------

#: Set to False to always use plain PyTorch ops (e.g. to compare the two paths).
USE_FUSED_CPU_KERNELS = True

_FUSABLE_DTYPES = (torch.float32, torch.bfloat16)


def _plain_conv(x, weight, bias, stride, padding, groups, gelu, add):
    y = F.conv2d(x, weight, bias, stride, padding, 1, groups)
    if add is not None:
        y = y + add
    # The exact (erf) GELU, as TinyViT was trained with.
    return F.gelu(y) if gelu else y


def _plain_linear(x, weight, bias, gelu, add):
    y = F.linear(x, weight, bias)
    if add is not None:
        y = y + add
    return F.gelu(y) if gelu else y


def _onednn_conv(x, weight, bias, stride, padding, groups, gelu, add):
    ops = torch.ops.mkldnn
    pads = list(padding) if isinstance(padding, (tuple, list)) else [padding, padding]  # (rows, columns)
    args = (pads, [stride, stride], [1, 1], groups)
    if add is None:
        attr, algorithm = ("gelu", "none") if gelu else ("none", None)
        return ops._convolution_pointwise(x, weight, bias, *args, attr, [], algorithm)
    # oneDNN will not apply GELU after a fused add: do that part separately.
    y = ops._convolution_pointwise.binary(x, add, weight, bias, *args, "add", None, None, [], None)
    return F.gelu(y) if gelu else y


def _onednn_linear(x, weight, bias, gelu, add):
    ops = torch.ops.mkldnn
    if add is not None:
        y = ops._linear_pointwise.binary(x, add, weight, bias, "add")
        return F.gelu(y) if gelu else y
    attr, algorithm = ("gelu", "none") if gelu else ("none", None)
    return ops._linear_pointwise(x, weight, bias, attr, [], algorithm)


@functools.cache
def _fused_kernels_work(dtype: torch.dtype) -> bool:
    """Do the oneDNN kernels exist here and agree with plain PyTorch for `dtype`?"""
    if not torch.backends.mkldnn.is_available():
        return False
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype)

    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    x = rand(2, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    add = rand(2, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    tokens, token_add = rand(2, 5, 8), rand(2, 5, 16)
    cases = [
        (_onednn_conv, _plain_conv, (x, rand(8, 1, 3, 3), rand(8), 2, 1, 8, True, None)),
        (_onednn_conv, _plain_conv, (x, rand(8, 1, 3, 3), rand(8), 2, (0, 1), 8, True, None)),  # TinyViT's strips
        (_onednn_conv, _plain_conv, (x, rand(8, 8, 1, 1), rand(8), 1, 0, 1, False, add)),
        (_onednn_conv, _plain_conv, (x, rand(8, 8, 3, 3), None, 1, 1, 1, False, None)),
        (_onednn_linear, _plain_linear, (tokens, rand(16, 8), rand(16), True, None)),
        (_onednn_linear, _plain_linear, (tokens, rand(16, 8), rand(16), False, token_add)),
        (_onednn_linear, _plain_linear, (tokens, rand(16, 8), None, False, None)),
    ]
    try:
        with torch.no_grad():
            for fused, plain, args in cases:
                got, expected = fused(*args).float(), plain(*args).float()
                if got.shape != expected.shape:
                    return False
                if (got - expected).norm() > tolerance * expected.norm():
                    return False
    except (AttributeError, RuntimeError, TypeError, ValueError, NotImplementedError):
        return False
    return True


def _can_fuse(x: torch.Tensor, *others: torch.Tensor | None) -> bool:
    if not USE_FUSED_CPU_KERNELS or x.device.type != "cpu" or x.dtype not in _FUSABLE_DTYPES:
        return False
    tensors = [t for t in others if t is not None]
    if any(t.dtype != x.dtype or t.device != x.device for t in tensors):
        return False  # let the plain op report (or handle) the mismatch
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *tensors)):
        return False
    return _fused_kernels_work(x.dtype)


def conv2d(x, weight, bias, stride=1, padding=0, groups=1, *, gelu=False, add=None) -> torch.Tensor:
    """Convolution, then ``+ add`` if given, then GELU if asked; fused on CPU when possible.

    ``padding``: one number for both axes, or (rows, columns)."""
    if _can_fuse(x, weight, bias, add) and (add is None or add.is_contiguous(memory_format=torch.channels_last)):
        return _onednn_conv(x, weight, bias, stride, padding, groups, gelu, add)
    return _plain_conv(x, weight, bias, stride, padding, groups, gelu, add)


def linear(x, weight, bias, *, gelu=False, add=None) -> torch.Tensor:
    """Linear layer, then ``+ add`` if given, then GELU if asked; fused on CPU when possible."""
    if _can_fuse(x, weight, bias, add) and (add is None or add.is_contiguous()):
        return _onednn_linear(x, weight, bias, gelu, add)
    return _plain_linear(x, weight, bias, gelu, add)


def apply_linear(layer, x, *, gelu=False, add=None) -> torch.Tensor:
    """A model's linear layer (float, or int8 from :mod:`.int8`), then ``+ add``, then GELU.

    Float layers go through :func:`linear` (fused on the CPU); int8 layers
    run their own kernel and the extras follow, in place on its fresh output:
    a new (4096, 3072) tensor for GELU's result took 32 ms against 7 ms in
    place (2-core EPYC), 0.3 s of a vit_b embedding.
    """
    if isinstance(layer, torch.nn.Linear):
        return linear(x, layer.weight, layer.bias, gelu=gelu, add=add)
    y = layer(x)
    if add is not None:
        y = y.add_(add)
    return torch.ops.aten.gelu_(y) if gelu else y
