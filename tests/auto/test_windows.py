"""The windowed finishing of grid masks gives the whole-plane path's numbers exactly."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_sam.auto import decode, rle, windows


def _logits(rng, n, L=64, kind="blobs"):
    """Low-res logits like a decoder's: smooth blobs (objects), anywhere, some touching the edges."""
    out = np.empty((n, L, L), np.float32)
    yy, xx = np.mgrid[:L, :L]
    for i in range(n):
        cy, cx = rng.uniform(-4, L + 4, 2)
        r = rng.uniform(1.5, L / 3)
        field = 8.0 * (1 - np.hypot(yy - cy, xx - cx) / r) + ndimage.gaussian_filter(rng.normal(0, 3, (L, L)), 2)
        if kind == "noise":
            field = rng.normal(0, 2, (L, L))
        out[i] = field
    out[0] = -20.0  # nothing anywhere
    out[1] = 20.0  # everything
    out[2] = -20.0
    out[2, 10, 10] = 1.0 + 1e-6  # one low-res pixel just above the stability offset
    out[3] = -0.999  # just above -offset everywhere: counts for the outer mask only
    return torch.from_numpy(out)


class _Predictor:
    def __init__(self, low_res, side, input_size, original_size):
        self.model = SimpleNamespace(image_size=side)
        self.embedding = SimpleNamespace(input_size=input_size, original_size=original_size)
        self.low_res = low_res

    def predict_batch(self, points, labels, multimask_output=True):
        n = len(points)
        low = self.low_res[: 3 * n].reshape(n, 3, *self.low_res.shape[-2:])
        iou = torch.linspace(0.5, 1.0, 3 * n).reshape(n, 3)
        return low, iou


def _decode(predictor, crop_box, image_hw, windowed, monkeypatch, **kw):
    calls = []
    finish_one = windows.finish_one
    monkeypatch.setattr(windows, "finish_one", lambda *a: calls.append(1) or finish_one(*a))
    if not windowed:
        monkeypatch.setattr(windows, "applies", lambda *a: False)
    grid = np.random.default_rng(1).random((len(predictor.low_res) // 3, 2))
    out = decode.decode_crop(predictor, grid, crop_box, 0, image_hw, points_per_batch=7, stability_offset=1.0, **kw)
    monkeypatch.undo()
    assert bool(calls) == windowed  # the path under test was taken
    return out


def _same(a, b):
    assert np.array_equal(a.iou, b.iou)
    assert np.array_equal(a.stability, b.stability, equal_nan=True)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.points, b.points)
    assert len(a.rles) == len(b.rles)
    for x, y in zip(a.rles, b.rles):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("input_size", [(256, 256), (256, 183), (131, 256)])
@pytest.mark.parametrize("kind", ["blobs", "noise"])
@pytest.mark.parametrize("share", [decode.WINDOW_SHARE, 1.0])  # 1.0: every mask on its window
def test_windowed_equals_whole_plane(input_size, kind, share, monkeypatch):
    low = _logits(np.random.default_rng(sum(input_size) + len(kind)), 42, kind=kind)
    predictor = _Predictor(low, 256, input_size, input_size)
    assert windows.applies(low, 256, input_size, input_size)
    box = [0, 0, input_size[1], input_size[0]]
    whole = _decode(predictor, box, input_size, False, monkeypatch)
    monkeypatch.setattr(decode, "WINDOW_SHARE", share)
    windowed = _decode(predictor, box, input_size, True, monkeypatch)
    _same(whole, windowed)
    assert np.isnan(windowed.stability[0]) and windowed.rles[0].tolist() == [input_size[0] * input_size[1]]


def test_windowed_equals_whole_plane_in_a_crop_with_floors(monkeypatch):
    low = _logits(np.random.default_rng(5), 30)
    predictor = _Predictor(low, 256, (256, 256), (256, 256))
    crop, image_hw = [100, 40, 356, 296], (400, 500)
    kw = dict(stability_floor=0.8)
    _same(_decode(predictor, crop, image_hw, False, monkeypatch, **kw),
          _decode(predictor, crop, image_hw, True, monkeypatch, **kw))


def test_the_window_path_is_only_taken_where_it_is_exact():
    low = torch.zeros(1, 64, 64)
    assert not windows.applies(low, 256, (256, 256), (512, 512))  # a second resize follows
    assert not windows.applies(torch.zeros(1, 64, 60), 256, (256, 256), (256, 256))


@pytest.mark.parametrize("seed", range(4))
def test_encode_window_equals_encoding_the_whole_mask(seed):
    rng = np.random.default_rng(seed)
    H, W = 23, 17
    mask = rng.random((9, 6)) > 0.5
    for y0, x0 in [(0, 0), (H - 9, W - 6), (3, 4), (0, W - 6), (H - 9, 0)]:
        mask[0, 0] = seed % 2 == 0
        mask[-1, :] = seed > 1  # runs crossing from one column's foot to the next one's head
        whole = np.zeros((H, W), bool)
        whole[y0 : y0 + 9, x0 : x0 + 6] = mask
        want = rle.encode(torch.from_numpy(whole)[None])[0]
        got = windows.encode_window((y0, x0, mask), (H, W))
        assert np.array_equal(got, want), (y0, x0)
