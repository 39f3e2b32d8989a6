"""Masks interpolated only along their edges: the very pixels of upsampling the whole plane and thresholding."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_sam.model import edge_bands, postprocess
from napari_sam.model.build import build_sam, tiny_config
from napari_sam.model.edge_bands import masks_from_edge_bands
from napari_sam.model.postprocess import masks_at_original_size, upscale_logits
from napari_sam.model.predictor import SamPredictor


@pytest.fixture(autouse=True)
def bands_even_where_edges_are_everywhere(monkeypatch):
    """The exactness tests take the bands even where edges run through most rows (noise)."""
    monkeypatch.setattr(edge_bands, "MOST_ROWS", float("inf"))


def upsampled(low, factor, size=None, halve=False):
    """masks_from_edge_bands of the whole upsampled plane (or of ``size``)."""
    return masks_from_edge_bands(low, factor, size or (factor * low.shape[-2], factor * low.shape[-1]), halve)


def halved(low, size):
    """The whole-plane path for an image half the input's size: upsample, crop, resize to half, threshold."""
    up = F.interpolate(low.reshape(-1, 1, *low.shape[-2:]), scale_factor=4, mode="bilinear", align_corners=False)
    up = up[..., :size[0], :size[1]]
    down = F.interpolate(up, size=(size[0] // 2, size[1] // 2), mode="bilinear", align_corners=False)
    return down.view(*low.shape[:2], size[0] // 2, size[1] // 2) > 0


@pytest.fixture
def taken(monkeypatch):
    """A list that grows by one each time postprocess takes the edge bands."""
    calls = []
    real = postprocess.masks_from_edge_bands
    monkeypatch.setattr(postprocess, "masks_from_edge_bands", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def whole(low, factor):
    n, m = low.shape[-2:]
    return F.interpolate(low.reshape(-1, 1, n, m), size=(factor * n, factor * m), mode="bilinear",
                         align_corners=False).view(*low.shape[:2], factor * n, factor * m) > 0


def blobs(shape, seed, noise=0.3):
    """Logits of a few discs of different radii, as a decoder gives for a click, plus noise."""
    g = torch.Generator().manual_seed(seed)
    B, C, n, m = shape
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(m, dtype=torch.float32), indexing="ij")
    out = torch.empty(shape)
    for b in range(B):
        for c in range(C):
            cy, cx = torch.rand(2, generator=g) * torch.tensor([n, m])
            r = 2 + torch.rand(1, generator=g).item() * max(n, m) / 2
            out[b, c] = (r - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()) * 2
    return out + torch.randn(shape, generator=g) * noise


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 3, 256, 256), (1, 3, 65, 256), (2, 3, 256, 140), (1, 1, 40, 33), (1, 3, 2, 64)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_smooth_logits_give_the_whole_plane_pixels(shape, seed, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        low = blobs(shape, seed)
        got = upsampled(low, 4)
        assert got is not None and got.dtype == torch.bool and got.shape == (*shape[:2], 4 * shape[2], 4 * shape[3])
        assert torch.equal(got, whole(low, 4))
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("factor", [2, 8])
def test_other_power_of_two_factors(factor):
    low = blobs((1, 3, 70, 90), seed=5)
    assert torch.equal(upsampled(low, factor), whole(low, factor))


def test_noise_everywhere_is_all_edges_and_still_exact(monkeypatch):
    low = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(upsampled(low, 4), whole(low, 4))
    monkeypatch.setattr(edge_bands, "MOST_ROWS", 0.5)
    assert upsampled(low, 4) is None  # edges in every row: the whole plane is cheaper
    assert upsampled(blobs((1, 3, 256, 256), seed=0, noise=0), 4) is not None


def test_a_plane_of_noise_is_one_band_beside_a_uniform_one_and_a_small_object(monkeypatch):
    monkeypatch.setattr(edge_bands, "MOST_ROWS", 0.5)
    low = torch.full((1, 3, 256, 256), -3.0)
    low[0, 0] = torch.randn(256, 256, generator=torch.Generator().manual_seed(8))
    low[0, 1] = 2.0  # a candidate covering the whole plane: no band
    low[0, 2, 100:110, 50:60] = 3.0
    expected = whole(low, 4)
    bands = []
    real = F.interpolate
    monkeypatch.setattr(edge_bands.F, "interpolate", lambda x, **k: bands.append(x.shape[-2]) or real(x, **k))
    assert torch.equal(upsampled(low, 4), expected)
    assert bands == [256, 12]


def test_values_at_and_near_zero_nan_and_infinities():
    g = torch.Generator().manual_seed(4)
    tiny = torch.tensor([0.0, -0.0, 1e-45, -1e-45, 1e-38, 1e-31, 1e-29, -1e-38, 3.0, -3.0])
    low = tiny[torch.randint(0, len(tiny), (1, 3, 48, 48), generator=g)]
    low[0, 0, 10:14, 10:14] = 5.0  # sure cells beside tiny ones
    low[0, 1, 20, 20] = float("nan")
    low[0, 2, 5, 5] = float("inf")
    assert torch.equal(upsampled(low, 4), whole(low, 4))


def test_constant_planes_need_no_interpolation(monkeypatch):
    calls = []
    real = F.interpolate
    monkeypatch.setattr(edge_bands.F, "interpolate", lambda *a, **k: calls.append(1) or real(*a, **k))
    low = torch.cat([torch.full((1, 1, 64, 64), 2.0), torch.full((1, 1, 64, 64), -2.0), torch.zeros(1, 1, 64, 64)], 1)
    got = upsampled(low, 4)
    assert calls == []
    assert got[0, 0].all() and not got[0, 1:].any()


def test_one_band_per_run_of_edge_rows(monkeypatch):
    low = torch.full((1, 2, 256, 256), -3.0)
    low[0, 0, 100:110, 50:60] = 3.0  # a small object: cell rows 100-110 read both signs
    low[0, 1, 10:20, 50:60] = low[0, 1, 200:210, 50:60] = 3.0  # two objects: two bands
    expected = whole(low, 4)
    bands = []
    real = F.interpolate
    monkeypatch.setattr(edge_bands.F, "interpolate", lambda x, **k: bands.append(x.shape[-2]) or real(x, **k))
    assert torch.equal(upsampled(low, 4), expected)
    assert bands == [12, 12, 12]  # source rows 99-110 (one more above), not the plane's 256


def test_bfloat16_logits():
    low = blobs((1, 3, 64, 64), seed=7).to(torch.bfloat16)
    assert torch.equal(upsampled(low, 4), whole(low, 4))


@pytest.mark.parametrize("case", ["factor 3", "narrow", "float16", "one row", "odd halved", "narrow halved"])
def test_where_the_shortcut_does_not_apply_it_says_so(case):
    low = blobs((1, 3, 64, 64), seed=1)
    args = {"factor 3": (low, 3), "narrow": (low[..., :32], 4), "float16": (low.half(), 4),
            "one row": (low[..., :1, :], 4), "odd halved": (low, 4, (256, 255), True),
            "narrow halved": (low, 4, (256, 256), True)}[case]
    assert upsampled(*args) is None


@pytest.mark.parametrize("size", [(256, 256), (256, 193), (140, 256)])
def test_masks_at_the_input_size_take_the_shortcut_and_match(size, taken):
    low = blobs((1, 3, 64, 64), seed=sum(size))
    got = masks_at_original_size(low, 256, size, size)
    assert taken == [1]
    assert got.is_contiguous() and got.shape == (1, 3, *size)
    assert torch.equal(got, upscale_logits(low, 256, size, size) > 0)


@pytest.mark.parametrize("side, image", [(256, (256, 190)), (512, (256, 190))])  # the input's size, half of it
def test_a_click_gives_the_masks_of_the_whole_plane_path(side, image, taken):
    torch.manual_seed(0)
    model = build_sam(tiny_config(side)).eval()
    p = SamPredictor(model, device="cpu", precision="fp32")
    emb = p.set_image(np.random.default_rng(1).integers(0, 4000, image, dtype=np.uint16))
    for point in ([[40, 60]], [[90, 10]]):
        masks, _, low = p.predict(point_coords=point, point_labels=[1])
        full = p.upscale_logits(torch.from_numpy(low)[None], emb)[0] > 0
        assert masks.shape == (3, *image)
        np.testing.assert_array_equal(masks, full.numpy())
    assert taken == [1, 1]


def test_edges_a_few_rows_apart_are_one_band(monkeypatch):
    low = torch.full((1, 2, 256, 256), -3.0)
    low[0, 0, 100:110, 50:60] = low[0, 0, 115:125, 50:60] = 3.0  # edge rows 100-110 and 115-125: 4 apart
    low[0, 1, 100:110, 50:60] = low[0, 1, 130:140, 50:60] = 3.0  # 19 apart
    expected = whole(low, 4)
    bands = []
    real = F.interpolate
    monkeypatch.setattr(edge_bands.F, "interpolate", lambda x, **k: bands.append(x.shape[-2]) or real(x, **k))
    assert torch.equal(upsampled(low, 4), expected)
    assert bands == [27, 12, 12]  # source rows 99-125; then 99-110 and 129-140


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("size", [(1024, 1024), (1024, 700), (600, 1024), (1024, 258)])
@pytest.mark.parametrize("seed", [0, 3])
def test_an_image_half_the_input_gives_the_whole_plane_pixels(size, seed, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        low = blobs((1, 3, 256, 256), seed)
        got = upsampled(low, 4, size, halve=True)
        assert got is not None and got.shape == (1, 3, size[0] // 2, size[1] // 2)
        assert torch.equal(got, halved(low, size))
    finally:
        torch.set_num_threads(before)


def test_a_crop_of_the_upsampled_plane():
    low = blobs((1, 3, 256, 226), seed=9)
    got = upsampled(low, 4, (1001, 901))
    assert torch.equal(got, whole(low, 4)[..., :1001, :901])


@pytest.mark.parametrize("original", [(512, 512), (512, 350), (300, 512)])
def test_masks_of_an_image_half_the_input_take_the_shortcut_and_match(original, taken):
    low = blobs((1, 3, 256, 256), seed=sum(original))
    size = (2 * original[0], 2 * original[1])
    got = masks_at_original_size(low, 1024, size, original)
    assert taken == [1]
    assert got.shape == (1, 3, *original)
    assert torch.equal(got, upscale_logits(low, 1024, size, original) > 0)


def test_other_sizes_take_the_whole_plane_path(monkeypatch):
    monkeypatch.setattr(postprocess, "masks_from_edge_bands", lambda *a, **k: pytest.fail("not for this size"))
    low = blobs((1, 3, 64, 64), seed=2)
    for original in [(129, 129), (300, 300), (512, 512)]:
        masks_at_original_size(low, 256, (256, 256), original)
