"""Drawing the three candidate masks of a prompt into "SAM candidate 1/2/3".

Each candidate layer is one plane deep and is moved (its translate) onto the
slice whose candidates it shows. Moving a layer makes napari recompute the
viewer's extent and re-slice the layer (tens of milliseconds for three
layers), so a layer is moved only when it is about to show a mask there:
stepping through slices without candidates moves nothing. The plane array is
overwritten in place and refreshed, which napari draws much faster than a
newly assigned array.

Candidates of a plane handled by tiles are crops of one box (their
``offset``): only that box of the layer is written, after the layer was
cleared.
"""

from __future__ import annotations

import numpy as np

from . import layers as L


def _rename(layer, name: str) -> None:
    if layer.name != name:
        layer.name = name


def show(layers, image, slice_index, cands) -> list[str]:
    """Write ``cands`` (a :class:`~napari_sam.prompts.Candidates` or None) into the candidate layers.

    Returns the labels for the three candidate buttons ("1: 0.93", or "1: –").
    """
    lead, plane = L.plane_shape(image)
    shape = (1,) * len(lead) + plane
    buttons = []
    for k, layer in enumerate(layers):
        data = layer.data
        if not isinstance(data, np.ndarray) or data.shape != shape or not data.flags.writeable:
            layer.data = data = np.zeros(shape, dtype=np.uint8)
        if cands is None or k >= cands.count:
            if data.any():
                data[...] = 0
                layer.refresh()
            _rename(layer, f"{L.CANDIDATE_NAME} {k + 1}")
            buttons.append(f"{k + 1}: –")
            continue
        if slice_index is not None:
            L.place_on_slice(layer, image, slice_index)
        chosen = k == cands.selected
        _write(data.reshape(plane), cands, k)
        _rename(layer, f"{L.CANDIDATE_NAME} {k + 1}: IoU {cands.iou[k]:.2f}" + (" (selected)" if chosen else ""))
        if layer.visible != chosen:
            layer.visible = chosen  # becoming visible refreshes the layer
        elif chosen:
            layer.refresh()
        buttons.append(f"{k + 1}: {cands.iou[k]:.2f}")
    return buttons


def _write(plane: np.ndarray, cands, k: int) -> None:
    """Candidate ``k`` as the value k + 1 in ``plane`` (in place)."""
    if cands.offset is None:
        np.multiply(cands.masks[k], k + 1, out=plane, casting="unsafe")
        return
    (y, x), (h, w) = cands.offset, cands.masks.shape[1:]
    plane[...] = 0
    np.multiply(cands.masks[k], k + 1, out=plane[y:y + h, x:x + w], casting="unsafe")
