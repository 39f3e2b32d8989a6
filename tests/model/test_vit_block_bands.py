"""ViT blocks in bands of rows on the CPU (large fp32 activations): the same numbers as the whole grid at once."""

import pytest
import torch

import napari_sam.model.image_encoder as image_encoder
from napari_sam.model.image_encoder import Block


def _block(window_size: int, grid: int, seed: int) -> Block:
    torch.manual_seed(seed)
    block = Block(dim=32, num_heads=2, window_size=window_size, grid_size=grid).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return block


def _bands_used(monkeypatch, block: Block, x: torch.Tensor, band_bytes: int) -> tuple[torch.Tensor, list[int]]:
    calls = []
    real = Block._band_rows
    monkeypatch.setattr(Block, "_band_rows", lambda self, t: calls.append(real(self, t)) or calls[-1])
    monkeypatch.setattr(image_encoder, "_FRESH_MAPPING_BYTES", 0)
    monkeypatch.setattr(image_encoder, "BAND_BYTES", band_bytes)
    with torch.inference_mode():
        return block(x), calls


# A windowed block on a grid that is not a whole number of windows (the last band is padded as the
# whole grid is), and a global block whose MLP runs in bands that do not divide the rows.
@pytest.mark.parametrize("window_size, grid, batch", [(4, 11, 1), (4, 11, 2), (0, 9, 1), (0, 9, 2)])
def test_a_block_in_bands_equals_the_whole_grid(monkeypatch, window_size, grid, batch):
    block = _block(window_size, grid, seed=grid + batch)
    x = torch.randn(batch, grid, grid, 32)
    with torch.inference_mode():
        whole = block(x)  # the default limits: a grid this small is never banded
    row_bytes = batch * grid * 32 * 4 * 4  # the MLP's hidden row (4 x 32 channels, float32)
    banded, calls = _bands_used(monkeypatch, block, x, band_bytes=2 * row_bytes)
    expected_rows = window_size if window_size else 2  # whole windows only; else the rows that fit
    assert calls == [expected_rows]
    assert torch.allclose(banded, whole, rtol=1e-5, atol=1e-6)
    assert (banded - whole).abs().max() < 1e-5


def test_bands_are_whole_window_rows_even_when_fewer_rows_would_fit(monkeypatch):
    block = _block(4, 11, seed=3)
    x = torch.randn(1, 11, 11, 32)
    _, calls = _bands_used(monkeypatch, block, x, band_bytes=1)
    assert calls == [4]


def test_no_bands_while_training_or_below_the_mapping_size(monkeypatch):
    block = _block(4, 11, seed=4)
    x = torch.randn(1, 11, 11, 32)
    assert block._band_rows(x) is None  # 11 rows of 11 tokens are far below 32 MiB
    monkeypatch.setattr(image_encoder, "_FRESH_MAPPING_BYTES", 0)
    monkeypatch.setattr(image_encoder, "BAND_BYTES", 1)
    with torch.inference_mode():
        assert block._band_rows(x) == 4
    block.train()
    assert block._band_rows(x) is None  # training keeps the plain computation
