"""The mask decoder's token-wise upscaling against the plain transposed convolutions it replaces."""

import pytest
import torch
import torch.nn.functional as F

from helpers import randomize_
from napari_sam.model.mask_decoder import MaskDecoder
from napari_sam.model.transformer import TwoWayTransformer


def conv_masks(decoder: MaskDecoder, src: torch.Tensor, hyper_in: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """SAM's formulation: (B, h*w, C) tokens as an image, output_upscaling's modules, one product per mask."""
    B, _, C = src.shape
    image = src.transpose(1, 2).reshape(B, C, h, w)
    up = decoder.output_upscaling(image)  # (B, C/8, 4h, 4w)
    return (hyper_in @ up.flatten(2)).view(B, -1, 4 * h, 4 * w)


@pytest.mark.parametrize("B, h, w", [(1, 4, 4), (2, 3, 5)])
def test_token_upscaling_matches_the_transposed_convolutions(B, h, w):
    torch.manual_seed(0)
    dim = 32
    decoder = MaskDecoder(transformer_dim=dim, transformer=TwoWayTransformer(depth=2, embedding_dim=dim, num_heads=2, mlp_dim=64))
    randomize_(decoder, seed=4).eval()
    src = torch.randn(B, h * w, dim)
    hyper_in = torch.randn(B, decoder.num_mask_tokens, dim // 8)
    with torch.inference_mode():
        ours = decoder._masks_from_tokens(src, hyper_in, h, w)
        ref = conv_masks(decoder, src, hyper_in, h, w)
    assert ours.shape == (B, decoder.num_mask_tokens, 4 * h, 4 * w)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    # Every mask differs (the rearrangement did not mix masks up).
    assert not torch.allclose(ours[:, 0], ours[:, 1])


def test_token_upscaling_in_bf16_stays_close_to_float32():
    torch.manual_seed(1)
    dim = 32
    decoder = MaskDecoder(transformer_dim=dim, transformer=TwoWayTransformer(depth=2, embedding_dim=dim, num_heads=2, mlp_dim=64))
    randomize_(decoder, seed=5).eval()
    src = torch.randn(1, 16, dim)
    hyper_in = torch.randn(1, decoder.num_mask_tokens, dim // 8)
    with torch.inference_mode():
        ref = conv_masks(decoder, src, hyper_in, 4, 4)
        low = decoder.to(torch.bfloat16)._masks_from_tokens(src.bfloat16(), hyper_in.bfloat16(), 4, 4).float()
    assert float((low - ref).norm() / ref.norm()) < 0.05
    assert F.cosine_similarity(low.flatten(), ref.flatten(), dim=0) > 0.99
