"""The "SAM Volume" dock widget with a tiny random SAM saved as a checkpoint file."""

import numpy as np
import pytest
import torch

from napari_sam.volume import EmbeddingStore
from napari_sam.widgets import volume as V


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from napari_sam.model.build import build_sam, tiny_config

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    torch.save(build_sam(tiny_config()).state_dict(), path)
    return path


@pytest.fixture
def errors(monkeypatch):
    """Messages the widget shows as napari error notifications."""
    seen = []
    monkeypatch.setattr(V, "show_error", seen.append)
    return seen


@pytest.fixture
def make_widget(make_napari_viewer, qtbot, tiny_checkpoint, tmp_path):
    made = []

    def make(viewer=None):
        viewer = viewer or make_napari_viewer()
        widget = V.VolumeWidget(viewer, confirm_clear=False)
        widget.checkpoint_edit.setText(str(tiny_checkpoint))
        widget.cache_edit.setText(str(tmp_path / "cache"))
        widget._update_cache_size()
        made.append(widget)
        return widget

    yield make
    for widget in made:
        widget.shutdown()
        qtbot.waitUntil(widget.is_idle, timeout=20000)


def run(qtbot, widget, method):
    worker = getattr(widget, method)()
    assert worker is not None, widget.status.text()
    qtbot.waitUntil(widget.is_idle, timeout=20000)
    return worker


def cancel_after_first_slice(widget, monkeypatch):
    """Press Cancel as soon as the job reports its first slice done (checked before each next slice)."""
    original = widget._progress

    def progress(done, total):
        original(done, total)
        if done >= 1:
            widget.cancel()

    monkeypatch.setattr(widget, "_progress", progress)


def stack(shape=(6, 64, 64), seed=1):
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_embed_caches_every_slice_and_skips_cached_ones(make_widget, qtbot, errors):
    widget = make_widget()
    widget.viewer.add_image(stack(), name="cells")
    assert widget.image_combo.currentText() == "cells"
    run(qtbot, widget, "embed")
    assert errors == []
    assert widget.last_embed.complete
    assert sorted(widget.last_embed.computed) == list(range(6))
    store = widget.store()
    assert len(store) == 6
    assert "6 slices" in widget.cache_label.text()
    assert widget.progress_bar.value() == widget.progress_bar.maximum() == 6

    run(qtbot, widget, "embed")
    assert widget.last_embed.computed == []
    assert sorted(widget.last_embed.loaded) == list(range(6))

    # Two entries lost (a cancelled or interrupted run): only those are computed again.
    for path in sorted(store.folder.glob("*.samemb"))[:2]:
        path.unlink()
    run(qtbot, widget, "embed")
    assert len(widget.last_embed.computed) == 2
    assert len(widget.last_embed.loaded) == 4
    assert len(store) == 6


def test_cancel_keeps_finished_slices(make_widget, qtbot, monkeypatch):
    widget = make_widget()
    widget.viewer.add_image(stack(), name="cells")
    cancel_after_first_slice(widget, monkeypatch)
    run(qtbot, widget, "embed")
    assert widget.last_embed.cancelled
    assert len(widget.last_embed.computed) == 1
    assert "cancelled" in widget.status.text()
    assert len(widget.store()) == 1


def test_clear_cache_empties_it(make_widget, qtbot):
    widget = make_widget()
    widget.viewer.add_image(stack((3, 32, 32)), name="cells")
    run(qtbot, widget, "embed")
    assert len(widget.store()) == 3
    assert widget.clear_cache()
    assert len(widget.store()) == 0
    assert widget.store().usage_bytes() == 0
    assert "0 slices" in widget.cache_label.text()


def test_propagate_commits_one_undoable_edit_and_spares_other_objects(make_widget, qtbot, errors):
    widget = make_widget()
    viewer = widget.viewer
    image = viewer.add_image(stack(), name="cells", scale=(2.0, 0.5, 0.5))
    labels = np.zeros((6, 64, 64), dtype=np.uint32)
    labels[3, 16:48, 16:48] = 5  # the object to follow
    labels[:, :8, :8] = 7  # another object in every slice
    labels[2, 20:30, 20:30] = 9  # another object where the walk may go
    layer = viewer.add_labels(labels.copy(), name="SAM labels", scale=image.scale)
    assert widget.labels_combo.currentText() == "SAM labels"
    layer.selected_label = 5
    assert widget.label_spin.value() == 5
    widget.iou_spin.setValue(0.0)  # accept whatever the random model answers, so the walk goes on

    run(qtbot, widget, "propagate")
    assert errors == []
    result = widget.last_propagation
    assert result is not None and not result.cancelled
    assert result.propagated_slices, result.summary()
    assert result.mask[3].sum() == 32 * 32  # the drawn slice is kept as drawn

    expected = labels.copy()
    expected[result.mask & ((labels == 0) | (labels == 5))] = 5
    np.testing.assert_array_equal(layer.data, expected)
    assert (layer.data[labels == 7] == 7).all()
    assert (layer.data[labels == 9] == 9).all()
    assert (layer.data != labels).any()
    assert "Object 5" in widget.status.text()

    layer.undo()
    np.testing.assert_array_equal(layer.data, labels)


def test_propagate_in_4d_changes_only_the_time_point_shown(make_widget, qtbot, errors):
    widget = make_widget()
    viewer = widget.viewer
    viewer.add_image(stack((2, 4, 32, 32)), name="movie")
    labels = np.zeros((2, 4, 32, 32), dtype=np.uint32)
    labels[1, 2, 8:24, 8:24] = 3
    layer = viewer.add_labels(labels.copy(), name="SAM labels")
    assert widget.axis_spin.value() == 1  # z of (t, z, y, x)
    viewer.dims.set_current_step(0, 1)
    widget.label_spin.setValue(3)
    widget.iou_spin.setValue(0.0)
    run(qtbot, widget, "propagate")
    assert errors == []
    assert widget.last_propagation.mask.shape == (4, 32, 32)
    result = widget.last_propagation
    assert result.propagated_slices, result.summary()
    np.testing.assert_array_equal(layer.data[0], labels[0])
    expected = labels[1].copy()
    expected[result.mask & ((labels[1] == 0) | (labels[1] == 3))] = 3
    np.testing.assert_array_equal(layer.data[1], expected)


def test_new_labels_layer_takes_the_image_geometry(make_widget, qtbot, errors):
    widget = make_widget()
    image = widget.viewer.add_image(stack((4, 32, 32)), name="cells", scale=(3.0, 0.2, 0.2), translate=(1, 2, 3))
    assert widget.labels_combo.currentText() == V.NEW_LABELS
    layer = widget.labels_for(image)
    assert layer.name == "SAM labels" and layer.data.dtype == np.uint32 and layer.data.shape == (4, 32, 32)
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    assert widget.labels_combo.currentText() == "SAM labels"
    layer.data[1, 5, 5] = 4
    assert widget.labels_for(image) is layer  # found again, not replaced
    assert layer.data[1, 5, 5] == 4


def test_2d_image_is_refused_with_a_message(make_widget, qtbot, errors):
    widget = make_widget()
    flat = widget.viewer.add_image(stack((64, 64)), name="flat")
    assert widget.image_combo.findText("flat") < 0
    widget.set_image(flat)
    assert errors and "2D" in errors[-1]
    assert widget.embed() is None
    assert len(errors) == 2 and "3D image" in errors[-1]
    assert len(widget.store()) == 0


def test_propagate_without_the_object_changes_nothing(make_widget, qtbot, errors):
    widget = make_widget()
    viewer = widget.viewer
    viewer.add_image(stack((4, 32, 32)), name="cells")
    labels = np.zeros((4, 32, 32), dtype=np.uint32)
    labels[1, 4:12, 4:12] = 2
    layer = viewer.add_labels(labels.copy(), name="SAM labels")
    widget.label_spin.setValue(6)
    assert widget.propagate() is None
    assert errors and "6" in errors[-1] and "nothing to propagate" in errors[-1]
    assert widget.is_idle()
    np.testing.assert_array_equal(layer.data, labels)
    assert len(widget.store()) == 0


def test_missing_checkpoint_is_reported(make_widget, qtbot, errors, tmp_path):
    widget = make_widget()
    widget.viewer.add_image(stack((3, 32, 32)), name="cells")
    widget.checkpoint_edit.setText(str(tmp_path / "nope.pth"))
    assert widget.embed() is None
    assert errors and "does not exist" in errors[-1]


def test_every_control_has_a_tooltip(make_widget):
    from qtpy.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QProgressBar

    widget = make_widget()
    controls = widget.findChildren((QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QProgressBar))
    assert controls
    missing = [c for c in controls if not c.toolTip() and not isinstance(c.parent(), (QAbstractSpinBox, QComboBox))]
    assert missing == []


def test_strokes_painted_while_propagating_are_kept(make_widget, qtbot, errors, monkeypatch):
    import threading

    gate = threading.Event()
    engine_propagate = V.propagate_with_sam

    def held(*args, **kwargs):
        assert gate.wait(timeout=20)
        return engine_propagate(*args, **kwargs)

    monkeypatch.setattr(V, "propagate_with_sam", held)
    widget = make_widget()
    viewer = widget.viewer
    viewer.add_image(stack((5, 32, 32)), name="cells")
    labels = np.zeros((5, 32, 32), dtype=np.uint32)
    labels[2, 4:28, 4:28] = 5
    layer = viewer.add_labels(labels.copy(), name="SAM labels")
    widget.label_spin.setValue(5)
    widget.iou_spin.setValue(0.0)
    assert widget.propagate() is not None
    assert not widget.propagate_button.isEnabled() and widget.cancel_button.isEnabled()
    # While the job runs, the user paints another object over every slice but the drawn one.
    stroke = np.ones((5, 32, 32), dtype=bool)
    stroke[2] = False
    layer.data_setitem(np.nonzero(stroke), 8)
    painted = layer.data.copy()
    gate.set()
    qtbot.waitUntil(widget.is_idle, timeout=20000)
    assert errors == []
    assert widget.last_propagation.propagated_slices  # the object reached the painted slices
    np.testing.assert_array_equal(layer.data, painted)  # nothing of the stroke overwritten
    assert widget.propagate_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_failure_in_the_worker_is_reported_and_changes_nothing(make_widget, qtbot, errors, tmp_path):
    widget = make_widget()
    viewer = widget.viewer
    viewer.add_image(stack((3, 32, 32)), name="cells")
    labels = np.zeros((3, 32, 32), dtype=np.uint32)
    labels[1, 4:12, 4:12] = 2
    layer = viewer.add_labels(labels.copy(), name="SAM labels")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    widget.checkpoint_edit.setText(str(broken))
    widget.label_spin.setValue(2)
    run(qtbot, widget, "propagate")
    assert errors and "failed" in errors[-1]
    np.testing.assert_array_equal(layer.data, labels)
    assert widget.embed_button.isEnabled()


def test_labels_of_another_size_are_refused(make_widget, qtbot, errors):
    widget = make_widget()
    viewer = widget.viewer
    viewer.add_image(stack((3, 32, 32)), name="cells")
    labels = np.zeros((3, 16, 16), dtype=np.uint32)
    labels[1, 2:6, 2:6] = 1
    layer = viewer.add_labels(labels.copy(), name="SAM labels")
    widget.label_spin.setValue(1)
    assert widget.propagate() is None
    assert errors and "shape" in errors[-1]
    np.testing.assert_array_equal(layer.data, labels)


def test_manifest_opens_the_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam-annotator", "SAM Volume")
    assert isinstance(widget, V.VolumeWidget)
    assert widget.model_combo.currentText() == "demo"
    widget.shutdown()


def test_cancelled_propagation_changes_nothing(make_widget, qtbot, errors, monkeypatch):
    widget = make_widget()
    viewer = widget.viewer
    viewer.add_image(stack((5, 32, 32)), name="cells")
    labels = np.zeros((5, 32, 32), dtype=np.uint32)
    labels[2, 4:28, 4:28] = 5
    layer = viewer.add_labels(labels.copy(), name="SAM labels")
    widget.label_spin.setValue(5)
    widget.iou_spin.setValue(0.0)
    widget.regrowth_check.setChecked(True)
    cancel_after_first_slice(widget, monkeypatch)
    run(qtbot, widget, "propagate")
    assert errors == []
    assert widget.last_propagation.cancelled
    assert "cancelled" in widget.status.text()
    np.testing.assert_array_equal(layer.data, labels)


def test_cache_folder_that_is_a_file_is_reported(make_widget, qtbot, errors, tmp_path):
    widget = make_widget()
    widget.viewer.add_image(stack((3, 32, 32)), name="cells")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    widget.cache_edit.setText(str(not_a_folder))
    assert widget.embed() is None
    assert errors and "not a folder" in errors[-1]
    assert not_a_folder.read_text() == "x"


def test_renamed_layers_stay_chosen(make_widget):
    widget = make_widget()
    viewer = widget.viewer
    viewer.add_image(stack((3, 32, 32)), name="a")
    b = viewer.add_image(stack((3, 32, 32)), name="b")
    labels = viewer.add_labels(np.zeros((3, 32, 32), np.uint32), name="SAM labels")
    widget.image_combo.setCurrentText("b")
    b.name = "b renamed"
    labels.name = "mine"
    assert widget.image is b and widget.image_combo.currentText() == "b renamed"
    assert widget.labels is labels and widget.labels_combo.currentText() == "mine"
