"""The "SAM Fine-tune" dock with a stub engine and the stand-in train command (tests/fake_train.py)."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam.finetune import list_models
from napari_sam.synthetic import make_nuclei_2d
from napari_sam.widgets import finetune as F
from napari_sam.widgets.annotator import workspace_for_factory
from napari_sam.widgets.model_form import ModelRows

FAKE = str(Path(__file__).parents[1] / "fake_train.py")
TIMEOUT_MS = 30000


@pytest.fixture
def errors(monkeypatch):
    seen = []
    monkeypatch.setattr(F, "show_error", seen.append)
    return seen


@pytest.fixture
def series(tmp_path):
    folder = tmp_path / "series"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for i in range(3):
        image, labels = make_nuclei_2d((64, 64), n_objects=(6, 8), seed=i)
        tifffile.imwrite(folder / "images" / f"img{i}.tif", image)
        tifffile.imwrite(folder / "labels" / f"img{i}.tif", labels.astype(np.uint16))
    return folder


@pytest.fixture
def dock(make_napari_viewer, qtbot, stub_factory, monkeypatch):
    monkeypatch.setattr(ModelRows, "_shared", [])  # models shared by earlier tests' docks stay there
    viewer = make_napari_viewer()
    widget = F.FineTuneWidget(viewer, workspace=workspace_for_factory(stub_factory))
    viewer.window.add_dock_widget(widget, name="SAM Fine-tune")
    layer = viewer.add_image(np.zeros((64, 64), np.uint8), name="img0")
    widget.session.prefetch_enabled = False
    widget.models.choose("demo")
    widget.models.load()
    qtbot.waitUntil(lambda: widget.session.engine is not None, timeout=TIMEOUT_MS)
    widget.train_entry = FAKE
    return viewer, layer, widget


def finish(qtbot, widget):
    qtbot.waitUntil(lambda: not widget._poll_timer.isActive(), timeout=TIMEOUT_MS)


def test_a_run_shows_progress_and_scores_and_the_user_chooses_to_switch(dock, series, qtbot, errors, monkeypatch):
    monkeypatch.setenv("FAKE_TRAIN", "slow")
    viewer, layer, w = dock
    w.set_series(series)
    w.steps_spin.setValue(15)
    assert w.start(), w.status.text()
    assert not w.start_button.isEnabled() and w.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: "/15 · loss" in w.progress_bar.format(), timeout=TIMEOUT_MS)
    assert "left" in w.progress_bar.format()
    assert not w.start() and "already running" in errors[-1]  # a second run is refused
    finish(qtbot, w)
    (record,) = list_models(series / "models")
    assert w.model_list.currentText() == "demo-ft1" and "is ready" in w.status.text()
    # The before/after table holds the report's scores.
    assert [w.table.item(r, 0).text() for r in range(3)] == ["0.61", "7.5", "0.31"]
    assert [w.table.item(r, 1).text() for r in range(3)] == ["0.83", "3.2", "0.52"]
    # The new model is in every chooser's list, but nothing switched by itself.
    assert w.models.model_combo.findText(record.path) >= 0
    assert w.session.engine_spec.model == "demo" and w.use_button.isEnabled()
    assert w.use_model()
    qtbot.waitUntil(lambda: w.session.engine_spec.model == record.path, timeout=TIMEOUT_MS)
    assert not w.use_button.isEnabled()
    assert len(errors) == 1  # the refused second run only


def test_cancel_keeps_nothing_and_a_failure_says_why(dock, series, qtbot, errors, monkeypatch):
    viewer, layer, w = dock
    w.set_series(series)
    monkeypatch.setenv("FAKE_TRAIN", "slow")
    w.steps_spin.setValue(500)
    assert w.start()
    qtbot.waitUntil(lambda: "/500 · loss" in w.progress_bar.format(), timeout=TIMEOUT_MS)
    w.cancel()
    finish(qtbot, w)
    assert "Cancelled" in w.status.text() and w.start_button.isEnabled()
    assert list_models(series / "models") == [] and w.model_list.count() == 0
    monkeypatch.setenv("FAKE_TRAIN", "disk_full")
    w.steps_spin.setValue(3)
    assert w.start()
    finish(qtbot, w)
    assert "disk is full" in w.status.text() and "fine-tuning failed" in errors[-1]
    assert sorted(p.name for p in (series / "models").iterdir()) == []


def test_too_few_objects_is_refused_with_what_to_do(dock, tmp_path, errors):
    viewer, layer, w = dock
    empty = tmp_path / "empty"
    (empty / "labels").mkdir(parents=True)
    w.set_series(empty)
    assert not w.start()
    assert "too few labelled objects" in errors[-1] and "label more" in w.status.text()


def test_a_series_image_chooses_its_series_and_lists_its_models(dock, series, qtbot):
    viewer, layer, w = dock
    import shutil

    models = series / "models"
    models.mkdir()
    from napari_sam.finetune.models import ModelRecord, write_record

    shutil.copy(Path(F.__file__).parents[1] / "models" / "demo_nuclei.pt", models / "demo-ft1.pt")
    write_record(ModelRecord(str(models / "demo-ft1.pt"), "demo", str(series), 10, "2026-12-01T10:00:00+00:00", 1.0))
    opened = viewer.add_image(np.zeros((64, 64), np.uint8), name="img1", metadata={"series_folder": str(series)})
    w.hub.series_image_opened.emit(opened)
    assert w.images.chosen is opened and w.series() == series
    assert w.model_list.currentText() == "demo-ft1" and w.table.item(0, 0).text() == "–"
    assert w.models.model_combo.findText(str(models / "demo-ft1.pt")) >= 0


def test_the_series_a_series_dock_opens_is_the_one_fine_tuned(dock, series):
    from napari_sam.widgets.series import SeriesWidget

    viewer, layer, w = dock
    opener = SeriesWidget(viewer)
    try:
        assert opener.open_folder(series)  # the real SAM Series dock: it names the folder in the image's metadata
        assert w.series() == series
        assert opener.layer.metadata["napari_sam_series"] == {"done": 0, "total": 3}
    finally:
        opener.close()
