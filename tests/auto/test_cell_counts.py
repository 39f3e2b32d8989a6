"""Pixel counts from cells equal the counts on the whole upsampled planes, pixel for pixel."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_sam.auto import cell_counts


def whole_plane_counts(low, side, thresholds):
    up = F.interpolate(low[:, None], size=(side, side), mode="bilinear", align_corners=False)[:, 0]
    return torch.stack([(up > t).flatten(1).sum(1) for t in thresholds], 1)


def smooth_logits(n, L, seed):
    """Blob-like logits (as trained decoders give) plus noise (as random weights give)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 1, L // 16, L // 16, generator=g) * 4
    return F.interpolate(coarse, size=(L, L), mode="bilinear", align_corners=False)[:, 0] + \
        0.05 * torch.randn(n, L, L, generator=g)


@pytest.mark.parametrize("L, side", [(256, 1024), (64, 256), (32, 256)])
def test_counts_equal_the_whole_planes(L, side):
    low = smooth_logits(5, L, seed=L)
    thresholds = [1.0, -1.0, 0.0, 0.02, -0.02]
    np.testing.assert_array_equal(cell_counts.counts_above(low, side, thresholds).numpy(),
                                  whole_plane_counts(low, side, thresholds).numpy())


def test_noise_spanning_the_plane_and_special_masks():
    g = torch.Generator().manual_seed(5)
    low = 0.03 * torch.randn(4, 256, 256, generator=g)
    low[1] = 5.0  # everything above
    low[2] = -5.0  # nothing above
    low[3, :, :128] = 2.0  # a straight edge on a cell boundary
    low[3, :, 128:] = -2.0
    thresholds = [0.02, -0.02, 0.0]
    got = cell_counts.counts_above(low, 1024, thresholds).numpy()
    np.testing.assert_array_equal(got, whole_plane_counts(low, 1024, thresholds).numpy())
    assert got[1].tolist() == [1024 * 1024] * 3 and got[2].tolist() == [0, 0, 0]


def test_non_finite_logits_count_as_the_plane_does():
    low = smooth_logits(2, 64, seed=1)
    low[0, 10, 10] = float("nan")
    low[1, 0, 5] = float("inf")
    thresholds = [0.5, -0.5]
    np.testing.assert_array_equal(cell_counts.counts_above(low, 256, thresholds).numpy(),
                                  whole_plane_counts(low, 256, thresholds).numpy())


def test_empty_batch_and_where_it_applies():
    assert cell_counts.counts_above(torch.zeros(0, 64, 64), 256, [0.0]).shape == (0, 1)
    low = torch.zeros(1, 1, 256, 256)
    assert cell_counts.applies(low, 1024, (1024, 1024), (1024, 1024))
    assert not cell_counts.applies(low, 1024, (1024, 768), (1024, 768))  # padding
    assert not cell_counts.applies(low, 1024, (1024, 1024), (2048, 2048))  # a second resize
    assert not cell_counts.applies(torch.zeros(1, 1, 256, 200), 1024, (1024, 1024), (1024, 1024))


def test_straddling_cells_get_the_whole_planes_pixels_bit_for_bit():
    # Counts hardly ever see a rounding difference, so the pixels themselves are compared.
    low = smooth_logits(3, 64, seed=7)
    up = F.interpolate(low[:, None], size=(256, 256), mode="bilinear", align_corners=False)[:, 0]
    where = torch.stack(torch.meshgrid(torch.arange(3), torch.arange(63), torch.arange(63), indexing="ij"), -1)
    where = where.reshape(-1, 3)[::7]  # a spread of cells, not a multiple of the strip length
    got = cell_counts._cell_pixels(low, where, 4).view(-1, 4, 4)
    m, i, j = where.unbind(1)
    rows = (4 * i + 2)[:, None] + torch.arange(4)
    cols = (4 * j + 2)[:, None] + torch.arange(4)
    want = up[m[:, None, None], rows[:, :, None], cols[:, None, :]]
    assert torch.equal(got, want)


def test_many_masks_are_counted_in_parts_with_the_same_numbers(monkeypatch):
    low = smooth_logits(7, 32, seed=3)
    thresholds = [0.5, -0.5]
    whole = whole_plane_counts(low, 128, thresholds).numpy()
    share = cell_counts.straddling_share(low, thresholds).numpy()
    monkeypatch.setattr(cell_counts, "MASKS_AT_ONCE", 3)
    np.testing.assert_array_equal(cell_counts.counts_above(low, 128, thresholds).numpy(), whole)
    np.testing.assert_array_equal(cell_counts.straddling_share(low, thresholds).numpy(), share)
