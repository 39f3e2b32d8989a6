import pytest
import torch

from napari_sam.auto.recommended import checkpoint_auto_settings, recommended_settings, with_auto_settings
from napari_sam.model import build_sam, load_model
from napari_sam.model.build import tiny_config
from napari_sam.model.registry import DEMO_AUTO_SETTINGS, MODELS


def test_the_demo_model_has_its_own_settings_and_sam_models_the_defaults():
    assert MODELS["demo"].auto_settings == DEMO_AUTO_SETTINGS
    assert recommended_settings(None, "demo") == DEMO_AUTO_SETTINGS
    assert recommended_settings(None, "vit_b") == {}


def test_a_trained_checkpoint_carries_its_settings(tmp_path):
    model = build_sam(tiny_config(64))
    path = tmp_path / "trained.pt"
    torch.save(with_auto_settings(model.state_dict(), {"points_per_side": 12, "pred_iou_thresh": 0.5}), path)
    assert checkpoint_auto_settings(path) == {"points_per_side": 12, "pred_iou_thresh": 0.5}
    assert recommended_settings(None, str(path)) == {"points_per_side": 12, "pred_iou_thresh": 0.5}
    loaded = load_model(str(path))  # the weights still load from the wrapped checkpoint
    assert loaded.config.image_size == 64
    with pytest.raises(ValueError, match="pred_iou_thresh must lie"):
        with_auto_settings(model.state_dict(), {"pred_iou_thresh": 3})
