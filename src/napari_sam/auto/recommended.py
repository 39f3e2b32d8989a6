"""Which automatic settings suit a model: its zoo entry's, a trained checkpoint's, else Segment Anything's defaults.

A zoo entry (:class:`napari_sam.model.registry.ModelInfo`) carries
``auto_settings``; a checkpoint written by training may carry them as the
``"auto_settings"`` entry of its dictionary beside the weights. Settings
given by the user always win over these.
"""

from __future__ import annotations

from pathlib import Path

from .settings import make_settings


def recommended_settings(model=None, name: str | None = None) -> dict:
    """The recommended settings (checked) for the model loaded as ``name`` (a zoo name or a checkpoint file)."""
    from ..model.registry import MODELS

    found = {}
    if name is not None and name in MODELS:
        found = dict(MODELS[name].auto_settings or {})
    elif name is not None and Path(name).expanduser().is_file():
        found = checkpoint_auto_settings(Path(name).expanduser())
    make_settings(**found)  # a wrong entry is reported here, naming the setting
    return found


def checkpoint_auto_settings(path) -> dict:
    """The ``"auto_settings"`` a checkpoint file holds beside its weights, or {}."""
    import torch

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return {}  # not ours to judge here: loading the model reports a broken file
    settings = content.get("auto_settings") if isinstance(content, dict) else None
    return dict(settings) if isinstance(settings, dict) else {}


def with_auto_settings(state: dict, settings: dict) -> dict:
    """A checkpoint dictionary ``{"model": weights, "auto_settings": settings}`` to save with torch.save."""
    make_settings(**settings)
    return {"model": state, "auto_settings": dict(settings)}
