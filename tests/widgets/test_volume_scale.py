"""The SAM Volume dock hands the image layer's scale to the walk (slices deeper than wide), or says why it cannot."""

import numpy as np
import pytest

from napari_sam.widgets import propagation_rows as PR
from test_volume import errors, make_widget, put, run, stack, tiny_checkpoint  # noqa: F401 (fixtures)


def recording(monkeypatch, name):
    """Replace the dock's ``name`` (propagate, propagate_all) by the real one, remembering its keyword arguments."""
    seen, real = [], getattr(PR, name)

    def record(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(PR, name, record)
    return seen


@pytest.mark.parametrize("scale, spacing", [((2.0, 0.5, 0.5), 4.0), ((1.0, 1.0, 1.0), None),
                                            ((-2.0, 0.5, 0.5), 4.0)])  # napari's flipped axis: same distance
def test_propagate_walks_with_the_slice_distance_of_the_scale(make_widget, qtbot, errors, monkeypatch,  # noqa: F811
                                                               scale, spacing):
    seen = recording(monkeypatch, "propagate")
    widget = make_widget(stack(), scale=scale)
    labels = np.zeros((6, 64, 64), dtype=np.uint32)
    labels[3, 16:48, 16:48] = 5
    put(widget, labels)
    widget.label_spin.setValue(5)
    widget.iou_spin.setValue(0.0)
    run(qtbot, widget, "propagate")
    assert errors == [] and seen[-1]["z_spacing"] == spacing  # None: napari's default scale, the walk's own
    assert widget.last_propagation.propagated_slices


def test_propagate_all_in_4d_takes_the_walked_axis_scale(make_widget, qtbot, errors, monkeypatch):  # noqa: F811
    seen = recording(monkeypatch, "propagate_all")
    widget = make_widget(stack((2, 4, 32, 32)), name="movie", scale=(10.0, 3.0, 1.0, 1.0))
    labels = np.zeros((2, 4, 32, 32), dtype=np.uint32)
    labels[0, 2, 8:24, 8:24] = 3
    put(widget, labels)
    widget.viewer.dims.set_current_step(1, 2)
    widget.iou_spin.setValue(0.0)
    run(qtbot, widget, "propagate_all")
    assert errors == [] and seen[-1]["z_spacing"] == 3.0  # z of (t, z, y, x), not the time step


def test_a_bad_scale_is_reported_and_changes_nothing(make_widget, qtbot, errors):  # noqa: F811
    widget = make_widget(stack((4, 32, 32)))
    labels = np.zeros((4, 32, 32), dtype=np.uint32)
    labels[1, 4:20, 4:20] = 2
    layer = put(widget, labels)
    widget.image.scale = (2.0, 1.0, 3.0)  # napari itself refuses 0 and fails drawing NaN, but takes this
    widget.label_spin.setValue(2)
    for action in ("propagate", "propagate_all"):
        assert not getattr(widget, action)()
        assert "pixels are not square" in errors[-1]
    np.testing.assert_array_equal(layer.data, labels)
