"""The demo model shipped inside the package: registered, verified, and it segments nuclei."""

import shutil
from pathlib import Path

import numpy as np
import pytest


import napari_sam
from napari_sam.geometry import interior_point, mask_iou
from napari_sam.model import SamPredictor, load_model
from napari_sam.model.checkpoint import CheckpointError, file_sha256
from napari_sam.model import zoo
from napari_sam.synthetic import make_nuclei_2d

DEMO_FILE = Path(napari_sam.__file__).parent / "models" / "demo_nuclei.pt"
# A seed the training never drew from (it draws from (run seed, step, slot) sequences).
HELD_OUT_SEED = 5_550_001


def test_demo_is_registered_with_the_checksum_of_the_shipped_file():
    info = zoo.MODELS["demo"]
    assert info.package_file == "models/demo_nuclei.pt"
    assert info.hash_algorithm == "sha256"
    assert file_sha256(DEMO_FILE) == info.hash_hex
    assert DEMO_FILE.stat().st_size == info.size < 10_000_000  # the size users are told; small enough to ship
    assert "generated nuclei only" in info.description


def test_demo_loads_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the demo model must not be downloaded")

    monkeypatch.setattr(zoo.pooch, "retrieve", no_network)
    model = load_model("demo", device="cpu")
    assert model.model_name == "demo"
    assert model.checkpoint_sha256 == zoo.MODELS["demo"].hash_hex
    assert model.image_size == 256


def test_damaged_demo_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "models" / "demo_nuclei.pt"
    copy.parent.mkdir()
    shutil.copyfile(DEMO_FILE, copy)
    with open(copy, "r+b") as f:  # flip one byte in the middle
        f.seek(copy.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(zoo, "_package_root", lambda: tmp_path)
    with pytest.raises(CheckpointError, match="damaged"):
        load_model("demo", device="cpu")


def test_a_click_inside_a_nucleus_gives_that_nucleus():
    image, labels = make_nuclei_2d((256, 256), n_objects=12, seed=HELD_OUT_SEED, dtype=np.uint16)
    predictor = SamPredictor(load_model("demo", device="cpu"), precision="fp32")
    predictor.set_image(image)
    ious = []
    for obj in range(1, int(labels.max()) + 1):
        mask = labels == obj
        if mask.sum() < 30:  # slivers at the border
            continue
        masks, scores, _ = predictor.predict(point_coords=[interior_point(mask)], point_labels=[1])
        best = masks[int(np.argmax(scores))]
        ious.append(mask_iou(best, mask))
    ious = np.array(ious)
    assert len(ious) >= 5
    # 9 of 12 nuclei come out with IoU >= 0.8 (mean 0.88) with the model shipped
    # now; the misses (0.68, 0.76, 0.78) are small nuclei pressed against a neighbour.
    assert np.mean(ious >= 0.8) >= 0.75, f"IoU per nucleus: {np.round(ious, 2).tolist()}"
    assert ious.mean() >= 0.85


def test_demo_file_holds_the_demo_architecture():
    from napari_sam.model.build import config_from_state_dict
    from napari_sam.model.checkpoint import read_state_dict
    from napari_sam.training.config import DEMO_CONFIG

    assert config_from_state_dict(read_state_dict(DEMO_FILE)) == DEMO_CONFIG
