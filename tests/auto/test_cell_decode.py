"""Decoding a grid with stability counted by cells gives the whole-plane path's candidates exactly."""

import numpy as np
import pytest

from napari_sam.auto import cell_counts, decode, windows
from test_windows import _logits, _Predictor, _same


def _decode(predictor, cells: bool, monkeypatch, **kw):
    """decode_crop with the window path off and the cell counts always (or never) taken."""
    taken = []
    counts_above = cell_counts.counts_above
    monkeypatch.setattr(windows, "applies", lambda *a: False)
    monkeypatch.setattr(cell_counts, "counts_above", lambda *a: taken.append(1) or counts_above(*a))
    if cells:
        monkeypatch.setattr(decode, "CELL_SHARE", 1.0)
    else:
        monkeypatch.setattr(cell_counts, "applies", lambda *a: False)
    grid = np.random.default_rng(1).random((len(predictor.low_res) // 3, 2))
    out = decode.decode_crop(predictor, grid, [0, 0, 256, 256], 0, (256, 256), points_per_batch=7,
                             stability_offset=1.0, **kw)
    monkeypatch.undo()
    assert bool(taken) == cells  # the path under test was taken
    return out


@pytest.mark.parametrize("kind", ["blobs", "noise"])
@pytest.mark.parametrize("floor", [0.0, 0.8])
def test_cell_counted_stability_equals_the_whole_planes(kind, floor, monkeypatch):
    low = _logits(np.random.default_rng(11 + len(kind)), 30, kind=kind)
    predictor = _Predictor(low, 256, (256, 256), (256, 256))
    whole = _decode(predictor, False, monkeypatch, stability_floor=floor)
    counted = _decode(predictor, True, monkeypatch, stability_floor=floor)
    _same(whole, counted)
    assert len(counted) > 0


def test_masks_with_long_boundaries_stay_on_whole_planes():
    rng = np.random.default_rng(2)
    low = _logits(rng, 6, kind="blobs")
    noise = _logits(rng, 6, kind="noise")
    share = cell_counts.straddling_share(low, (1.0, -1.0)).numpy()
    noisy = cell_counts.straddling_share(noise, (1.0, -1.0)).numpy()
    assert share[0] == 0.0 and share[1] == 0.0  # nothing / everything: no boundary at all
    assert (noisy[4:] > 0.1).all() and (share[4:] < noisy[4:]).all()
