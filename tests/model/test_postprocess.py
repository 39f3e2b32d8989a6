"""Masks at the image's size in bands: the very numbers of the whole-plane path, at a bounded peak."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_sam
from napari_sam.model import postprocess
from napari_sam.model.build import build_sam, tiny_config
from napari_sam.model.embedding import ImageEmbedding
from napari_sam.model.image import resized_shape
from napari_sam.model.postprocess import masks_at_original_size, upscale_logits
from napari_sam.model.predictor import SamPredictor

SIDE = 128


def low_res(channels=3, seed=0):
    return torch.randn(1, channels, SIDE // 4, SIDE // 4, generator=torch.Generator().manual_seed(seed)) * 4


@pytest.mark.parametrize(
    "original",
    [(48, 64), (64, 48), (300, 400), (1000, 733), (733, 1000), (2, 5000), (5000, 3), (128, 128), (129, 127), (97, 1)],
)
@pytest.mark.parametrize("channels", [3, 1])
def test_bands_give_the_whole_plane_numbers(original, channels, monkeypatch):
    monkeypatch.setattr(postprocess, "BAND_BYTES", 4096)  # many narrow bands
    monkeypatch.setattr(postprocess, "WHOLE_PLANE_PIXELS", 0)  # bands even for these small planes
    size = resized_shape(*original, SIDE)
    logits = low_res(channels, seed=sum(original))
    full = upscale_logits(logits, SIDE, size, original)
    masks = masks_at_original_size(logits, SIDE, size, original)
    assert masks.dtype == torch.bool and masks.shape == (1, channels, *original)
    assert torch.equal(masks, full > 0)
    assert torch.equal(masks_at_original_size(logits, SIDE, size, original, logits=True), full)


def test_predict_on_a_mid_size_image_gives_the_masks_of_the_whole_plane_path(monkeypatch):
    torch.manual_seed(0)
    model = build_sam(tiny_config(SIDE)).eval()
    p = SamPredictor(model, device="cpu", precision="fp32")
    image = np.random.default_rng(1).integers(0, 4000, (1500, 1100), dtype=np.uint16)
    emb = p.set_image(image)
    prompt = dict(point_coords=[[500, 700]], point_labels=[1])
    monkeypatch.setattr(postprocess, "WHOLE_PLANE_PIXELS", 10**6)  # 1.65 megapixels: in bands
    for band in (postprocess.BAND_BYTES, 64 * 1024):
        monkeypatch.setattr(postprocess, "BAND_BYTES", band)
        masks, _, low = p.predict(**prompt)
        whole = p.upscale_logits(torch.from_numpy(low)[None], emb)[0] > 0
        assert masks.shape == (3, 1500, 1100)
        np.testing.assert_array_equal(masks, whole.numpy())


def test_a_plane_too_large_for_memory_says_what_it_needs(monkeypatch):
    real_empty = torch.empty

    def no_memory(*shape, **kwargs):
        if np.prod(shape[0] if len(shape) == 1 else shape) > 10**8:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: "
                               "you tried to allocate 1200000000 bytes. Error code 12 (Cannot allocate memory)")
        return real_empty(*shape, **kwargs)

    monkeypatch.setattr(torch, "empty", no_memory)
    torch.manual_seed(0)
    model = build_sam(tiny_config(SIDE)).eval()
    p = SamPredictor(model, device="cpu", precision="fp32")
    features = torch.zeros(1, model.prompt_encoder.embed_dim, *model.prompt_encoder.image_embedding_size)
    p.set_embedding(ImageEmbedding(features, (20000, 20000), resized_shape(20000, 20000, SIDE), model.weights_id, "t"))
    with pytest.raises(MemoryError, match=r"this plane of 20000 x 20000 pixels needs about 1\.\d GB"):
        p.predict(point_coords=[[10, 10]], point_labels=[1])


def test_a_plane_too_large_to_prepare_says_what_it_needs(monkeypatch):
    real_empty = np.empty

    def no_memory(shape, *args, **kwargs):
        if np.prod(shape) >= 3000 * 3000:
            raise MemoryError("Unable to allocate 8.58 MiB for an array with shape (3000, 3000) and data type uint8")
        return real_empty(shape, *args, **kwargs)

    monkeypatch.setattr(np, "empty", no_memory)
    p = SamPredictor(build_sam(tiny_config(SIDE)).eval(), device="cpu", precision="fp32")
    with pytest.raises(MemoryError, match=r"this plane of 3000 x 3000 pixels needs about 9 MB to be prepared"):
        p.set_image(np.ones((3000, 3000), np.uint16))


_UNDER_A_LIMIT = """
import resource, sys
import numpy as np, torch
from napari_sam.model.build import build_sam, tiny_config
from napari_sam.model.embedding import ImageEmbedding
from napari_sam.model.image import resized_shape
from napari_sam.model.predictor import SamPredictor

torch.manual_seed(0)
model = build_sam(tiny_config(1024)).eval()
p = SamPredictor(model, device="cpu", precision="fp32")
features = torch.randn(1, model.prompt_encoder.embed_dim, *model.prompt_encoder.image_embedding_size)
def emb(n):
    return ImageEmbedding(features, (n, n), resized_shape(n, n, 1024), model.weights_id, "t")
p.set_embedding(emb(1500))
p.predict(point_coords=[[10, 10]], point_labels=[1])  # warm-up: the decoder's own memory
p.set_embedding(emb(8000))
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
limit = vm + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
masks, _, _ = p.predict(point_coords=[[10, 10]], point_labels=[1])
print(masks.shape)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="address-space limits as Linux sets them")
def test_three_masks_of_64_megapixels_fit_in_550_mb():
    # Whole float32 planes need 12 bytes per pixel (770 MB here) before the 1-byte masks are made.
    env = dict(os.environ, PYTHONPATH=str(Path(napari_sam.__file__).parents[1]), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", _UNDER_A_LIMIT, str(550 * 10**6)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(3, 8000, 8000)" in done.stdout
