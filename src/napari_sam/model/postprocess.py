"""From the decoder's low-resolution logits to masks at the size of the user's image.

As SAM does: upsample the logits to the padded encoder input, drop the
padding, then resize bilinearly to the original size. On whole float32
planes that last step costs 12 bytes per pixel for three candidates, 4.8 GB
for a 20000 x 20000 plane, although the masks themselves are bool (3 bytes
per pixel). :func:`masks_at_original_size` computes the same numbers with a
bounded peak:

* bilinear resizing is separable, and torch's kernel, upsampling, gives bit
  for bit the same result as one pass along the rows (to the new width)
  followed by one along the columns (to the new height); the tests check
  this on the CPU (not yet on a GPU, where the bands run too). Planes up to
  4 megapixels, and those smaller than the encoder's input, which are
  resized down, are resized whole, in one go;
* the first pass keeps the input's height (at most the encoder's input side,
  1024 px): 12 bytes x 1024 per output column;
* the second pass treats every column on its own, so it runs on bands of
  columns (about 32 MB of float32 at a time), each thresholded into the bool
  masks at once.

Where the image is the resized input itself (its long side is the
encoder's) or half of it, only the rows along the masks' edges are
upsampled (:mod:`napari_sam.model.edge_bands`): inside and outside an edge,
the sign of the logits around a pixel already decides it.

The masks are written to CPU memory (where they end up anyway), so a GPU
holds only one band.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .edge_bands import masks_from_edge_bands

# Float32 bytes of one band of the second pass.
BAND_BYTES = 32 * 2**20
# Planes up to this many pixels are resized whole (at most 48 MB of float32 for three candidates):
# there one 2D pass was faster than two (a click on 1500 x 2000: 38-43 ms whole, 55-59 ms in bands;
# on 3000 x 4000 bands took 108-130 ms against 116-156 ms whole; 2-core CPU, a tiny model).
WHOLE_PLANE_PIXELS = 4_000_000


def _crop_padding(low_res: torch.Tensor, side: int, h: int, w: int) -> torch.Tensor:
    """Low-res logits without the rows/columns that only ever become padding, which is dropped anyway.

    Upsampling by the same integer factor, every kept pixel has the same
    source position and neighbours: the result is identical, on fewer pixels
    (a 300x1000 image: about half the upsampling time). One extra row and
    column stay, the neighbours of the last kept pixels.
    """
    f = side // low_res.shape[-1]
    rows = min(low_res.shape[-2], -(-h // f) + 1)
    cols = min(low_res.shape[-1], -(-w // f) + 1)
    return low_res[..., :rows, :cols]


def _resize_planes(x: torch.Tensor, size: tuple[int, int] | None, scale: int | None = None) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) logits to ``size``, or by an integer ``scale``, each plane on its own.

    Resizing the masks as a batch of single-channel images gives the same
    numbers and, on the CPU, measured about 5x faster than as one 3-channel
    image (which the kernel copies around).
    """
    B, C = x.shape[:2]
    if size is None:
        size = (x.shape[-2] * scale, x.shape[-1] * scale)
    planes = x.reshape(B * C, 1, *x.shape[2:])
    return F.interpolate(planes, size, mode="bilinear", align_corners=False).view(B, C, *size)


def logits_at_input_size(low_res: torch.Tensor, side: int, input_size: tuple[int, int]) -> torch.Tensor:
    """(B, C, 4h', 4w') low-res logits -> (B, C, h, w) at the resized image's size inside the padded input."""
    h, w = input_size
    lh, lw = low_res.shape[-2:]
    if lh == lw and side % lw == 0:
        return _resize_planes(_crop_padding(low_res, side, h, w), None, scale=side // lw)[..., :h, :w]
    # not SAM's layout (square, an integer factor below the input): the general path
    return _resize_planes(low_res, (side, side))[..., :h, :w]


def _masks_by_edge_bands(low_res: torch.Tensor, side: int, input_size, original_size) -> torch.Tensor | None:
    """``upscale_logits(...) > 0`` interpolating only along the masks' edges, for images the size of the
    encoder's input or half of it; None where that shortcut does not apply (:mod:`.edge_bands`)."""
    (h, w), (H, W) = tuple(input_size), tuple(original_size)
    lh, lw = low_res.shape[-2:]
    if lh != lw or side % lw or ((H, W) != (h, w) and (2 * H, 2 * W) != (h, w)):
        return None
    return masks_from_edge_bands(_crop_padding(low_res, side, h, w), side // lw, (h, w), halve=(H, W) != (h, w))


def upscale_logits(low_res: torch.Tensor, side: int, input_size, original_size) -> torch.Tensor:
    """Logits at the original size (B, C, H, W), on whole float32 planes (12 bytes per pixel for 3)."""
    x = logits_at_input_size(low_res, side, input_size)
    if tuple(input_size) != tuple(original_size):
        x = _resize_planes(x, tuple(original_size))
    return x


def masks_at_original_size(
    low_res: torch.Tensor, side: int, input_size, original_size, *, logits: bool = False
) -> torch.Tensor:
    """:func:`upscale_logits` ``> 0`` (or the logits, with ``logits=True``) on the CPU, at a bounded peak.

    Raises MemoryError saying how much the plane needs when it does not fit.
    """
    if not logits:
        masks = _masks_by_edge_bands(low_res, side, input_size, original_size)
        if masks is not None:
            return masks
    x = logits_at_input_size(low_res, side, input_size)
    (h, w), (H, W) = tuple(input_size), tuple(original_size)
    if H < h or W < w or H * W <= WHOLE_PLANE_PIXELS:
        # Small planes; among them images smaller than the encoder's input, resized down
        # (where two passes would round differently) or not at all.
        if (h, w) != (H, W):
            x = _resize_planes(x, (H, W))
        return (x if logits else x > 0.0).cpu()
    B, C = x.shape[:2]
    dtype = torch.float32 if logits else torch.bool
    need = B * C * (H * W * (4 if logits else 1) + 4 * h * W) + BAND_BYTES
    out = _allocate((B, C, H, W), dtype, need, original_size)
    try:
        wide = _resize_planes(x, (h, W))  # first pass: each row to the new width
    except RuntimeError as err:
        raise _too_large(err, need, original_size, logits) from None
    columns = max(1, BAND_BYTES // (4 * B * C * H))
    for c0 in range(0, W, columns):
        c1 = min(W, c0 + columns)
        band = _resize_planes(wide[..., c0:c1], (H, c1 - c0))  # second pass: each column to the new height
        out[..., c0:c1] = (band if logits else band > 0.0).cpu()
    return out


def size_text(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.0f} MB"


def _allocate(shape, dtype, need: int, original_size) -> torch.Tensor:
    try:
        return torch.empty(shape, dtype=dtype)
    except (RuntimeError, MemoryError) as err:
        raise _too_large(err, need, original_size, dtype == torch.float32) from None


def _too_large(err: BaseException, need: int, original_size, logits: bool) -> BaseException:
    if isinstance(err, RuntimeError) and "alloc" not in str(err).lower():
        return err  # not the allocator: not ours to rephrase
    H, W = original_size
    what = "float32 logits, 4 bytes" if logits else "masks, 1 byte"
    return MemoryError(
        f"this plane of {H} x {W} pixels needs about {size_text(need)} for its candidate {what} per pixel "
        "each, more than is free; close other programs, segment a smaller region (a crop of the plane), or ask "
        "for one candidate (multimask_output=False)"
    )
