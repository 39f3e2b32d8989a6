"""The "SAM Series" dock: open a folder, move through it, labels saved and shown again, nothing lost."""

import errno

import numpy as np
import pytest
import tifffile

from napari_sam.series import ImageSeries
from napari_sam.widgets import series as S
from napari_sam.widgets.hub import hub_for


@pytest.fixture
def messages(monkeypatch):
    seen = {"error": [], "warning": []}
    monkeypatch.setattr(S, "show_error", seen["error"].append)
    monkeypatch.setattr(S, "show_warning", seen["warning"].append)
    return seen


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for name, shape in [("cells2", (40, 50)), ("cells10", (40, 50)), ("cells1", (30, 30))]:
        tifffile.imwrite(tmp_path / f"{name}.tif", rng.integers(0, 255, shape, dtype=np.uint8))
    return tmp_path


@pytest.fixture
def make_dock(make_napari_viewer):
    def make(viewer=None):
        viewer = viewer or make_napari_viewer()
        return viewer, S.SeriesWidget(viewer)

    return make


def paint(dock, value, where=(slice(2, 9), slice(3, 12))):
    """An edit as napari's tools make it (one undoable step, a paint event)."""
    region = np.zeros(dock.labels.data.shape, bool)
    region[where] = True
    dock.labels.data_setitem(np.nonzero(region), value)


def image_layers(viewer):
    return [lyr.name for lyr in viewer.layers if type(lyr).__name__ == "Image"]


def test_open_next_previous_and_labels_follow_their_image(make_dock, folder, messages):
    viewer, dock = make_dock()
    opened = []
    hub_for(viewer).series_image_opened.connect(opened.append)
    assert dock.open_folder(folder)
    assert image_layers(viewer) == ["cells1"] and dock.counter.text() == "image 1 of 3, 0 done"
    assert opened == [viewer.layers["cells1"]] and not dock.previous_button.isEnabled()
    paint(dock, 4)
    assert dock.step(1)  # saved before the next image replaces this one
    assert image_layers(viewer) == ["cells2"] and opened[-1] is viewer.layers["cells2"]
    assert [lyr.name for lyr in viewer.layers if lyr.name.startswith("SAM labels")] == ["SAM labels"]
    assert not viewer.layers["SAM labels"].data.any() and viewer.layers["SAM labels"].data.shape == (40, 50)
    saved = tifffile.imread(folder / "labels" / "cells1.tif")
    assert (saved == 4).sum() == 7 * 9
    assert dock.step(-1)
    assert (np.asarray(viewer.layers["SAM labels"].data) == 4).sum() == 7 * 9  # shown again
    assert (folder / "cells1.tif").stat().st_size > 0 and messages["error"] == []


def test_labels_are_saved_a_moment_after_an_edit(make_dock, folder, qtbot, messages):
    _, dock = make_dock()
    dock.open_folder(folder)
    paint(dock, 2)
    target = folder / "labels" / "cells1.tif"
    qtbot.waitUntil(target.exists, timeout=10000)  # by the dock's own timer: no switch, no close
    assert tifffile.imread(target).max() == 2 and not dock.saver.dirty
    # Another program rewrites the file while the image is open: it is kept, ours go beside it.
    tifffile.imwrite(target, np.full((30, 30), 7, np.uint16))
    paint(dock, 3)
    assert dock.flush()
    assert "changed outside napari" in messages["warning"][-1] and tifffile.imread(target).min() == 7
    (copy,) = target.parent.glob("cells1.conflict-*.tif")
    assert tifffile.imread(copy).max() == 3


def test_an_undo_sends_no_paint_event_but_is_saved_on_switching(make_dock, folder):
    _, dock = make_dock()
    dock.open_folder(folder)
    paint(dock, 3)
    assert dock.flush()
    dock.labels.undo()
    assert dock.step(1)
    assert not tifffile.imread(folder / "labels" / "cells1.tif").any()


def test_it_resumes_where_the_user_stopped_with_the_done_marks(make_dock, folder):
    viewer, dock = make_dock()
    dock.open_folder(folder)
    dock.go(2)
    dock.done_check.setChecked(True)
    paint(dock, 1)
    assert dock.image_list.item(2).text() == S.DONE_MARK + "cells10"
    dock.shutdown()  # napari closed
    assert tifffile.imread(folder / "labels" / "cells10.tif").max() == 1
    _, again = make_dock(viewer)
    again.open_folder(folder)
    assert again.index == 2 and again.done_check.isChecked() and again.counter.text() == "image 3 of 3, 1 done"
    assert np.asarray(again.labels.data).max() == 1


def test_a_failed_save_keeps_the_image_and_says_why(make_dock, folder, messages, monkeypatch):
    viewer, dock = make_dock()
    dock.open_folder(folder)
    paint(dock, 5)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "labels of cells1 not saved: the disk is full")

    monkeypatch.setattr(dock.series, "save_labels", disk_full)
    assert not dock.step(1)
    assert image_layers(viewer) == ["cells1"] and dock.saver.dirty
    assert "stayed on cells1" in messages["error"][-1] and "disk is full" in messages["error"][-1]
    monkeypatch.undo()
    # Removing the labels layer by hand saves what it held before it goes.
    viewer.layers.remove(viewer.layers["SAM labels"])
    assert (tifffile.imread(folder / "labels" / "cells1.tif") == 5).any() and dock.index is None


def test_a_second_window_on_the_series_is_read_only_and_says_so(make_dock, folder, messages):
    _, first = make_dock()
    first.open_folder(folder)
    _, second = make_dock()
    second.open_folder(folder)
    assert second.series.read_only and second.saver is None
    assert "Read-only" in messages["warning"][-1] and "another window" in messages["warning"][-1]
    paint(second, 9)
    second.shutdown()
    assert not (folder / "labels" / "cells1.tif").exists()
    first.shutdown()  # the first window lets go: a new one may write
    assert not ImageSeries(folder).read_only


def test_a_folder_with_skipped_files_opens_and_lists_why(make_dock, folder, messages):
    (folder / "broken.tif").write_bytes(b"not a tiff")
    _, dock = make_dock()
    assert dock.open_folder(folder)
    assert dock.image_list.count() == 3 and "broken.tif: cannot read the image" in dock.status.text()
    assert not dock.open_folder(folder / "missing")
    assert "is not a folder" in messages["error"][-1] and dock.series is None


def test_closing_napari_s_window_saves_the_labels(make_napari_viewer, folder, qtbot):
    viewer = make_napari_viewer(show=True)
    dock = S.SeriesWidget(viewer)
    viewer.window.add_dock_widget(dock, name="SAM Series")
    qtbot.waitUntil(lambda: dock._watched_window is not None, timeout=5000)
    dock.open_folder(folder)
    paint(dock, 8)
    viewer.close()
    assert tifffile.imread(folder / "labels" / "cells1.tif").max() == 8


def test_page_down_and_page_up_move_through_the_series(make_dock, folder):
    viewer, dock = make_dock()
    dock.open_folder(folder)
    handler = viewer.window._qt_viewer._key_map_handler  # what napari's canvas feeds key presses to
    for key, expected in [("PageUp", 0), ("PageDown", 1), ("PageUp", 0)]:  # no image before the first
        handler.press_key(key)
        handler.release_key(key)
        assert dock.index == expected, key


def test_a_labels_layer_the_user_made_before_is_kept_not_filled(make_dock, folder, messages):
    viewer, dock = make_dock()
    before = np.zeros((30, 30), np.uint32)
    before[5:9, 5:9] = 3
    viewer.add_labels(before.copy(), name="SAM labels")  # drawn before the series was opened
    dock.open_folder(folder)
    np.testing.assert_array_equal(viewer.layers["SAM labels (kept)"].data, before)
    assert dock.labels is viewer.layers["SAM labels"] and not dock.labels.data.any()
    assert "kept as 'SAM labels (kept)'" in messages["warning"][0]


def test_the_annotator_follows_the_series_image(make_dock, folder):
    from napari_sam.widgets.annotator import AnnotatorWidget

    viewer, dock = make_dock()
    annotator = AnnotatorWidget(viewer, autoload=False)
    dock.open_folder(folder)
    paint(dock, 2)
    assert dock.step(1)
    assert annotator.link is dock.hub.existing(dock.layer) and annotator.link.labels is dock.labels
    assert (tifffile.imread(folder / "labels" / "cells1.tif") == 2).any()
