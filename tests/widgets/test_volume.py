"""The "SAM Volume" dock with a tiny random SAM saved as a checkpoint file."""

import threading

import numpy as np
import pytest
import torch

from napari_sam.session import EmbeddingSource, Workspace
from napari_sam.volume import EmbeddingStore
from napari_sam.widgets import hub as H
from napari_sam.widgets import propagation_rows as PR
from napari_sam.widgets import volume as V
from napari_sam.widgets.annotator import AnnotatorWidget

TIMEOUT_MS = 30000


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from napari_sam.model.build import build_sam, tiny_config

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pth"
    torch.save(build_sam(tiny_config()).state_dict(), path)
    return path


@pytest.fixture
def errors(monkeypatch):
    """Messages shown as napari error notifications (by the dock or by its session)."""
    seen = []
    monkeypatch.setattr(V, "show_error", seen.append)
    monkeypatch.setattr(H, "show_error", seen.append)
    return seen


def fresh_workspace(folder):
    return Workspace(embeddings=EmbeddingSource(store=EmbeddingStore(folder)))


@pytest.fixture
def make_widget(make_napari_viewer, qtbot, tiny_checkpoint, tmp_path):
    def make(data=None, name="cells", viewer=None, workspace=None, load=True, **image_kwargs):
        viewer = viewer or make_napari_viewer()
        widget = V.VolumeWidget(viewer, workspace=workspace or fresh_workspace(tmp_path / "cache"), confirm_clear=False)
        if data is not None:
            viewer.add_image(data, name=name, **image_kwargs)
            widget.session.prefetch_enabled = False  # no neighbours embedded behind the test's back
            if load:
                widget.load_model(str(tiny_checkpoint))
                qtbot.waitUntil(lambda: widget.session.engine is not None, timeout=TIMEOUT_MS)
                qtbot.waitUntil(widget.is_idle, timeout=TIMEOUT_MS)
        return widget

    return make


def run(qtbot, widget, method):
    assert getattr(widget, method)(), widget.status.text()
    qtbot.waitUntil(widget.is_idle, timeout=TIMEOUT_MS)


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
    widget = make_widget(stack())
    assert widget.image_combo.currentText() == "cells"
    run(qtbot, widget, "embed")
    assert errors == []
    shown = widget.link.current_slice()[0]  # embedded as soon as the model was there
    assert sorted(widget.last_embed.computed) == [z for z in range(6) if z != shown]
    assert widget.last_embed.loaded == [shown] and not widget.last_embed.cancelled
    store = widget.store()
    assert len(store) == 6
    assert widget.cache.cache_label.text().endswith("B (6 slices)")
    assert widget.progress_bar.value() == widget.progress_bar.maximum() == 6

    run(qtbot, widget, "embed")
    assert widget.last_embed.computed == [] and sorted(widget.last_embed.loaded) == list(range(6))

    # Two entries lost (a cancelled or interrupted run), and memory empty: only those are computed again.
    widget.hub.workspace.embeddings.memory.clear()
    for path in sorted(store.folder.glob("*.samemb"))[:2]:
        path.unlink()
    run(qtbot, widget, "embed")
    assert len(widget.last_embed.computed) == 2 and len(widget.last_embed.loaded) == 4
    assert len(store) == 6


def test_after_embed_stack_the_annotator_never_runs_the_encoder_not_even_after_reopening(
    make_widget, make_napari_viewer, qtbot, tmp_path
):
    data = stack((5, 48, 48))
    widget = make_widget(data)
    viewer = widget.viewer
    run(qtbot, widget, "embed")
    source = widget.hub.workspace.embeddings
    assert source.encoder_calls == 5 and len(widget.store()) == 5
    annotator = AnnotatorWidget(viewer, autoload=False)  # the same workspace: the viewer's hub
    viewer.window.add_dock_widget(annotator)
    assert annotator.session is widget.session and annotator.engine is widget.session.engine
    for z in (4, 0, 2, 3, 1):
        viewer.dims.set_current_step(0, z)
        qtbot.waitUntil(lambda: annotator.session.slice_index == (z,) and annotator.session.embedding_ready
                        and annotator.is_idle(), timeout=TIMEOUT_MS)
    assert source.encoder_calls == 5  # zero encoder calls while clicking through every slice
    annotator.shutdown()

    # napari closed and opened again on the same stack: a new viewer, new memory, the same folder.
    again = make_widget(data, viewer=make_napari_viewer(), workspace=fresh_workspace(tmp_path / "cache"))
    reopened = AnnotatorWidget(again.viewer, autoload=False)
    again.viewer.window.add_dock_widget(reopened)
    source = again.hub.workspace.embeddings
    for z in range(5):
        again.viewer.dims.set_current_step(0, z)
        qtbot.waitUntil(lambda: reopened.session.slice_index == (z,) and reopened.session.embedding_ready
                        and reopened.is_idle(), timeout=TIMEOUT_MS)
        assert "read from disk" in reopened.status.text() or "in memory" in reopened.status.text()
    assert source.encoder_calls == 0 and source.disk_reads == 5
    reopened.shutdown()


def test_cancel_keeps_finished_slices(make_widget, qtbot, monkeypatch):
    widget = make_widget(stack())
    cancel_after_first_slice(widget, monkeypatch)
    run(qtbot, widget, "embed")
    assert widget.last_embed.cancelled and len(widget.last_embed.computed) == 1
    assert "cancelled" in widget.status.text()
    assert len(widget.store()) >= 1


def test_clear_cache_empties_it(make_widget, qtbot):
    widget = make_widget(stack((3, 32, 32)))
    run(qtbot, widget, "embed")
    assert len(widget.store()) == 3
    assert widget.clear_cache()
    assert len(widget.store()) == 0 and widget.store().usage_bytes() == 0
    assert "0 slices" in widget.cache.cache_label.text()


def put(widget, labels):
    """Draw ``labels`` into the image's "SAM labels" layer."""
    layer = widget.link.labels
    layer.data = labels.copy()
    return layer


def test_propagate_commits_one_undoable_edit_and_spares_other_objects(make_widget, qtbot, errors):
    widget = make_widget(stack(), scale=(2.0, 0.5, 0.5))
    labels = np.zeros((6, 64, 64), dtype=np.uint32)
    labels[3, 16:48, 16:48] = 5  # the object to follow
    labels[:, :8, :8] = 7  # another object in every slice
    labels[2, 20:30, 20:30] = 9  # another object where the walk may go
    layer = put(widget, labels)
    np.testing.assert_allclose(layer.scale, (2.0, 0.5, 0.5))
    layer.selected_label = 5
    assert widget.label_spin.value() == 5
    widget.iou_spin.setValue(0.0)  # accept whatever the random model answers, so the walk goes on
    run(qtbot, widget, "propagate")
    assert errors == []
    result = widget.last_propagation
    assert result is not None and not result.cancelled and result.propagated_slices, result.summary()
    assert result.mask[3].sum() == 32 * 32  # the drawn slice is kept as drawn
    expected = labels.copy()
    expected[result.mask & ((labels == 0) | (labels == 5))] = 5
    np.testing.assert_array_equal(layer.data, expected)
    assert (layer.data[labels == 7] == 7).all() and (layer.data[labels == 9] == 9).all()
    assert (layer.data != labels).any() and "Object 5" in widget.status.text()
    layer.undo()
    np.testing.assert_array_equal(layer.data, labels)


def test_propagate_in_4d_changes_only_the_time_point_shown(make_widget, qtbot, errors):
    widget = make_widget(stack((2, 4, 32, 32)), name="movie")
    labels = np.zeros((2, 4, 32, 32), dtype=np.uint32)
    labels[1, 2, 8:24, 8:24] = 3
    layer = put(widget, labels)
    assert widget.axis_spin.value() == 1  # z of (t, z, y, x)
    widget.viewer.dims.set_current_step(0, 1)
    widget.label_spin.setValue(3)
    widget.iou_spin.setValue(0.0)
    run(qtbot, widget, "propagate")
    assert errors == []
    result = widget.last_propagation
    assert result.mask.shape == (4, 32, 32) and result.propagated_slices, result.summary()
    np.testing.assert_array_equal(layer.data[0], labels[0])
    expected = labels[1].copy()
    expected[result.mask & ((labels[1] == 0) | (labels[1] == 3))] = 3
    np.testing.assert_array_equal(layer.data[1], expected)


def test_the_labels_layer_takes_the_image_geometry(make_widget, qtbot):
    widget = make_widget(stack((4, 32, 32)), scale=(3.0, 0.2, 0.2), translate=(1, 2, 3), load=False)
    layer = widget.link.labels
    assert layer.name == "SAM labels" and layer.data.dtype == np.uint32 and layer.data.shape == (4, 32, 32)
    np.testing.assert_allclose(layer.scale, (3.0, 0.2, 0.2))
    np.testing.assert_allclose(layer.translate, (1, 2, 3))


def test_2d_image_is_refused_with_a_message(make_widget, qtbot, errors):
    widget = make_widget()
    flat = widget.viewer.add_image(stack((64, 64)), name="flat")
    assert widget.image_combo.findText("flat") < 0
    widget.set_image(flat)
    assert errors and "2D" in errors[-1]
    assert not widget.embed()
    assert len(errors) == 2 and "3D image" in errors[-1]
    assert len(widget.store()) == 0


def test_propagate_without_the_object_or_model_changes_nothing(make_widget, qtbot, errors):
    widget = make_widget(stack((4, 32, 32)), load=False)
    labels = np.zeros((4, 32, 32), dtype=np.uint32)
    labels[1, 4:12, 4:12] = 2
    layer = put(widget, labels)
    widget.label_spin.setValue(2)
    assert not widget.propagate()
    assert errors and "load a model first" in errors[-1]
    widget.load_model("demo")
    qtbot.waitUntil(lambda: widget.session.engine is not None, timeout=TIMEOUT_MS)
    widget.label_spin.setValue(6)
    assert not widget.propagate()
    assert "6" in errors[-1] and "nothing to propagate" in errors[-1]
    assert not widget.cancel_button.isEnabled()  # no job started
    np.testing.assert_array_equal(layer.data, labels)
    assert len(widget.store()) == 0


def test_a_model_that_cannot_be_loaded_is_reported(make_widget, qtbot, errors, tmp_path):
    widget = make_widget(stack((3, 32, 32)), load=False)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    widget.load_model(str(broken))
    qtbot.waitUntil(lambda: bool(errors), timeout=TIMEOUT_MS)
    assert "broken.pth" in errors[-1] and widget.session.engine is None
    assert not widget.embed() and "load a model" in errors[-1]


def test_every_control_has_a_tooltip(make_widget):
    from qtpy.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QProgressBar

    widget = make_widget()
    controls = widget.findChildren((QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QProgressBar))
    assert controls
    missing = [c for c in controls if not c.toolTip() and not isinstance(c.parent(), (QAbstractSpinBox, QComboBox))]
    assert missing == []


def test_strokes_painted_while_propagating_are_kept(make_widget, qtbot, errors, monkeypatch):
    gate = threading.Event()
    engine_propagate = PR.propagate

    def held(*args, **kwargs):
        assert gate.wait(timeout=20)
        return engine_propagate(*args, **kwargs)

    monkeypatch.setattr(PR, "propagate", held)
    widget = make_widget(stack((5, 32, 32)))
    labels = np.zeros((5, 32, 32), dtype=np.uint32)
    labels[2, 4:28, 4:28] = 5
    layer = put(widget, labels)
    widget.label_spin.setValue(5)
    widget.iou_spin.setValue(0.0)
    assert widget.propagate()
    assert not widget.propagate_button.isEnabled() and widget.cancel_button.isEnabled()
    assert not widget.propagate() and "already running" in errors[-1]  # one job at a time
    errors.clear()
    # While the job runs, the user paints another object over every slice but the drawn one.
    stroke = np.ones((5, 32, 32), dtype=bool)
    stroke[2] = False
    layer.data_setitem(np.nonzero(stroke), 8)
    painted = layer.data.copy()
    gate.set()
    qtbot.waitUntil(widget.is_idle, timeout=TIMEOUT_MS)
    assert errors == []
    assert widget.last_propagation.propagated_slices  # the object reached the painted slices
    np.testing.assert_array_equal(layer.data, painted)  # nothing of the stroke overwritten
    assert widget.propagate_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_failure_in_the_worker_is_reported_and_changes_nothing(make_widget, qtbot, errors, monkeypatch):
    def broken(*args, **kwargs):
        raise MemoryError("out of memory in slice 2")

    monkeypatch.setattr(PR, "propagate", broken)
    widget = make_widget(stack((3, 32, 32)))
    labels = np.zeros((3, 32, 32), dtype=np.uint32)
    labels[1, 4:12, 4:12] = 2
    layer = put(widget, labels)
    widget.label_spin.setValue(2)
    run(qtbot, widget, "propagate")
    assert errors and "failed" in errors[-1] and "out of memory" in errors[-1]
    np.testing.assert_array_equal(layer.data, labels)
    assert widget.embed_button.isEnabled()


def test_cancelled_propagation_changes_nothing(make_widget, qtbot, errors, monkeypatch):
    widget = make_widget(stack((5, 32, 32)))
    labels = np.zeros((5, 32, 32), dtype=np.uint32)
    labels[2, 4:28, 4:28] = 5
    layer = put(widget, labels)
    widget.label_spin.setValue(5)
    widget.iou_spin.setValue(0.0)
    widget.regrowth_check.setChecked(True)
    cancel_after_first_slice(widget, monkeypatch)
    run(qtbot, widget, "propagate")
    assert errors == [] and widget.last_propagation.cancelled
    assert "cancelled" in widget.status.text()
    np.testing.assert_array_equal(layer.data, labels)


def test_cache_folder_that_is_a_file_is_reported(make_widget, qtbot, errors, tmp_path):
    widget = make_widget(stack((3, 32, 32)))
    before = widget.store()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    widget.cache.cache_edit.setText(str(not_a_folder))
    assert not widget.cache.use_folder()
    assert errors and "not a folder" in errors[-1]
    assert not_a_folder.read_text() == "x" and widget.store() is before


def test_renamed_layers_stay_chosen(make_widget):
    widget = make_widget()
    viewer = widget.viewer
    viewer.add_image(stack((3, 32, 32)), name="a")
    b = viewer.add_image(stack((3, 32, 32)), name="b")
    widget.image_combo.setCurrentText("b")
    b.name = "b renamed"
    assert widget.image is b and widget.image_combo.currentText() == "b renamed"
    assert widget.link.image is b


def test_propagate_all_walks_every_object_of_the_slice_in_one_undo_step(make_widget, qtbot, errors):
    widget = make_widget(stack((5, 32, 32)))
    labels = np.zeros((5, 32, 32), dtype=np.uint32)
    labels[2, 2:14, 2:14] = 3
    labels[2, 18:30, 18:30] = 7
    labels[0, 0:3, 0:3] = 9  # another object, not on the slice shown: never touched
    layer = put(widget, labels)
    widget.viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: widget.link.current_slice() == (2,), timeout=5000)
    widget.iou_spin.setValue(0.0)
    run(qtbot, widget, "propagate_all")
    assert errors == []
    after = np.asarray(layer.data)
    assert set(np.unique(after)) <= {0, 3, 7, 9}
    np.testing.assert_array_equal(after[2], labels[2])  # the drawn slice stays as drawn
    np.testing.assert_array_equal(after == 9, labels == 9)
    assert sorted(widget.last_propagation.objects) == [3, 7]
    layer.undo()
    np.testing.assert_array_equal(layer.data, labels)


def test_propagate_all_and_correct_say_what_is_missing(make_widget, qtbot, errors):
    widget = make_widget(stack((4, 32, 32)))
    labels = np.zeros((4, 32, 32), dtype=np.uint32)
    labels[0, 4:20, 4:20] = 2
    layer = put(widget, labels)
    widget.viewer.dims.set_current_step(0, 3)
    qtbot.waitUntil(lambda: widget.link.current_slice() == (3,), timeout=5000)
    assert not widget.propagate_all() and "slice 3 holds no object" in errors[-1]
    widget.label_spin.setValue(2)
    assert not widget.correct() and "no candidate on this slice" in errors[-1]
    np.testing.assert_array_equal(layer.data, labels)


def test_correct_takes_the_candidate_of_the_slice_and_re_walks_in_one_undo_step(make_widget, qtbot, errors):
    from napari_sam.prompts import Prompt

    widget = make_widget(stack((5, 32, 32)))
    labels = np.zeros((5, 32, 32), dtype=np.uint32)
    labels[1:4, 6:26, 6:26] = 4
    layer = put(widget, labels)
    widget.viewer.dims.set_current_step(0, 2)
    qtbot.waitUntil(lambda: widget.link.current_slice() == (2,) and widget.session.embedding_ready, timeout=TIMEOUT_MS)
    widget.session.set_prompt((2,), Prompt.make(points=[[16, 16]], labels=[1]))
    qtbot.waitUntil(lambda: widget.session.candidates() is not None, timeout=TIMEOUT_MS)
    candidate = np.asarray(widget.session.candidates().mask, dtype=bool)
    widget.label_spin.setValue(4)
    widget.iou_spin.setValue(0.0)
    run(qtbot, widget, "correct")
    assert errors == []
    after = np.asarray(layer.data)
    np.testing.assert_array_equal(after[2] == 4, candidate)  # the slice is the candidate now
    assert set(np.unique(after)) <= {0, 4}
    layer.undo()
    np.testing.assert_array_equal(layer.data, labels)
