"""ImageSeries: listing, resuming, labels saved and read back, and every bad input with its message."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_sam.series import ImageSeries, natural_key
from napari_sam.training.data import FolderSource
from napari_sam.writers import read_labels_tiff


def write_images(folder, names, shape=(24, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        tifffile.imwrite(folder / name, rng.integers(0, 255, shape, dtype=np.uint8))


def blob(shape, value=1, where=(slice(2, 8), slice(3, 9))):
    labels = np.zeros(shape, np.uint32)
    labels[(Ellipsis, *where)] = value
    return labels


@pytest.fixture
def series_dir(tmp_path):
    write_images(tmp_path, ["img10.tif", "img2.tif", "img1.tiff"])
    return tmp_path


def test_images_are_listed_in_natural_order_and_the_train_layout_is_found(series_dir, tmp_path_factory):
    assert sorted(["img10", "img2", "img1"], key=natural_key) == ["img1", "img2", "img10"]
    series = ImageSeries(series_dir)
    assert series.names == ["img1", "img2", "img10"] and len(series) == 3
    assert series.labels_path(1) == series_dir / "labels" / "img2.tif"
    assert series.models_folder == series_dir / "models"
    train = tmp_path_factory.mktemp("train")
    write_images(train / "images", ["a.tif"])
    assert ImageSeries(train).image_path(0) == train / "images" / "a.tif"
    # Choosing the inner images/ folder opens the same series: labels never land inside images/.
    (train / "labels").mkdir()
    assert ImageSeries(train / "images").labels_path(0) == train / "labels" / "a.tif"


def test_labels_round_trip_and_the_input_image_is_never_written(series_dir):
    before = (series_dir / "img2.tif").read_bytes()
    series = ImageSeries(series_dir)
    assert not series.read_labels(1).any() and series.read_labels(1).shape == (24, 32)
    labels = blob((24, 32), 7)
    saved = series.save_labels(1, labels)
    assert not saved.conflict and saved.path == series_dir / "labels" / "img2.tif"
    np.testing.assert_array_equal(series.read_labels(1), labels)
    assert series.labelled() == ["img2"]
    assert (series_dir / "img2.tif").read_bytes() == before
    series.save_labels(1, labels * 0)  # emptied again: not labelled any more
    assert series.labelled() == []


def test_voxel_size_of_the_image_is_kept_in_its_labels(tmp_path):
    stack = np.zeros((3, 16, 20), np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    series = ImageSeries(tmp_path)
    assert series.image_scale(0) == (2.0, 0.25, 0.25)
    series.save_labels(0, blob((3, 16, 20)))
    assert read_labels_tiff(series.labels_path(0))[1]["scale"] == (2.0, 0.25, 0.25)


def test_rgb_images_get_labels_without_the_colour_axis(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((20, 30, 3), np.uint8), photometric="rgb")
    series = ImageSeries(tmp_path)
    assert series.labels_shape(0) == (20, 30)
    with pytest.raises(ValueError, match=r"shape \(20, 30, 3\) but the image needs \(20, 30\)"):
        series.save_labels(0, np.zeros((20, 30, 3), np.uint32))
    with pytest.raises(ValueError, match="integers"):
        series.save_labels(0, np.zeros((20, 30), np.float32))


def test_current_image_and_done_marks_are_resumed(series_dir):
    series = ImageSeries(series_dir)
    assert series.current == 0 and series.counter_text() == "image 1 of 3, 0 done"
    series.go(2)
    series.mark_done("img1")
    series.mark_done(2)
    series.mark_done(2, False)
    series.close()
    again = ImageSeries(series_dir)
    assert again.current == 2 and again.is_done(0) and not again.is_done(2)
    assert again.counter_text() == "image 3 of 3, 1 done"


def test_a_damaged_state_file_is_set_aside_and_the_labels_stay(series_dir):
    series = ImageSeries(series_dir)
    series.save_labels(0, blob((24, 32)))
    series.close()
    (series_dir / ".napari-sam" / "series.json").write_text("{not json")
    with pytest.warns(UserWarning, match="could not be read"):
        again = ImageSeries(series_dir)
    assert again.current == 0 and again.read_labels(0).any()
    assert (series_dir / ".napari-sam" / "series.json.damaged").exists()


def test_unreadable_and_other_files_are_skipped_with_a_reason_and_the_series_opens(series_dir):
    (series_dir / "broken.tif").write_bytes(b"II*\x00garbage")
    good = (series_dir / "img1.tiff").read_bytes()
    (series_dir / "cut.tif").write_bytes(good[: len(good) // 2])  # a copy interrupted
    (series_dir / "photo.png").write_bytes(b"\x89PNG")
    (series_dir / "notes.txt").write_text("not an image")
    series = ImageSeries(series_dir)
    assert series.names == ["img1", "img2", "img10"]
    reasons = dict(series.skipped)
    assert set(reasons) == {"broken.tif", "cut.tif", "photo.png"}
    assert "cannot read the image" in reasons["broken.tif"] and "truncated" in reasons["cut.tif"]
    assert "only TIFF" in reasons["photo.png"]


def test_an_empty_folder_says_what_to_put_there(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="(?s)no usable TIFF image.*photo.png: only TIFF"):
        ImageSeries(tmp_path)
    with pytest.raises(ValueError, match="is not a folder"):
        ImageSeries(tmp_path / "missing")


def test_images_of_different_sizes_are_allowed_but_each_labels_file_must_match(tmp_path):
    write_images(tmp_path, ["small.tif"], (16, 16))
    write_images(tmp_path, ["large.tif", "wrong.tif"], (40, 48))
    (tmp_path / "labels").mkdir()
    tifffile.imwrite(tmp_path / "labels" / "wrong.tif", np.zeros((16, 16), np.uint16))
    series = ImageSeries(tmp_path)
    assert series.names == ["large", "small"]
    assert series.labels_shape("small") == (16, 16) and series.labels_shape("large") == (40, 48)
    (why,) = [r for n, r in series.skipped if n == "wrong.tif"]
    assert "labels/wrong.tif has shape (16, 16) but the image needs (40, 48)" in why
    assert "fix or move" in why
    with pytest.raises(ValueError, match="have shape"):
        series.save_labels("small", np.zeros((40, 48), np.uint32))


def test_labels_edited_outside_are_kept_and_ours_saved_beside_them(series_dir):
    series = ImageSeries(series_dir)
    series.read_labels(0)
    series.save_labels(0, blob((24, 32), 1))
    theirs = blob((24, 32), 5, (slice(10, 20), slice(10, 20)))
    tifffile.imwrite(series.labels_path(0), theirs)  # another program saves while napari has the image open
    saved = series.save_labels(0, blob((24, 32), 2))
    assert saved.conflict and "changed outside napari" in saved.message and saved.path.name in saved.message
    assert saved.path.name.startswith("img1.conflict-") and saved.path.parent == series.labels_folder
    np.testing.assert_array_equal(tifffile.imread(series.labels_path(0)), theirs)  # theirs untouched
    np.testing.assert_array_equal(tifffile.imread(saved.path), blob((24, 32), 2))
    # Further saves go to the same conflict copy, not a new file each time; reopening settles it.
    assert series.save_labels(0, blob((24, 32), 3)).path == saved.path
    np.testing.assert_array_equal(series.read_labels(0), theirs)
    assert not series.save_labels(0, blob((24, 32), 4)).conflict
    # A file touched without change is not a conflict.
    os.utime(series.labels_path(0), ns=(1, 1))
    assert not series.save_labels(0, blob((24, 32), 4)).conflict


def test_existing_labels_never_read_here_are_not_overwritten(series_dir):
    (series_dir / "labels").mkdir()
    tifffile.imwrite(series_dir / "labels" / "img2.tif", blob((24, 32), 9))
    series = ImageSeries(series_dir)
    assert series.save_labels(1, blob((24, 32), 1)).conflict
    assert tifffile.imread(series_dir / "labels" / "img2.tif").max() == 9


def test_disk_full_while_saving_keeps_the_previous_file_and_says_so(series_dir, monkeypatch):
    series = ImageSeries(series_dir)
    series.save_labels(0, blob((24, 32), 1))
    real = tifffile.imwrite

    def disk_full(file, *args, **kwargs):
        real(file, *args, **kwargs)  # part of the data reached the disk ...
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", disk_full)
    with pytest.raises(OSError, match="img1.*the disk is full.*keeps its last saved version") as caught:
        series.save_labels(0, blob((24, 32), 2))
    assert caught.value.errno == errno.ENOSPC
    monkeypatch.undo()
    np.testing.assert_array_equal(series.read_labels(0), blob((24, 32), 1))
    assert [p.name for p in series.labels_folder.iterdir()] == ["img1.tif"]  # no temporary file left


def test_a_second_window_opens_read_only_and_names_the_first(series_dir):
    first = ImageSeries(series_dir)
    second = ImageSeries(series_dir)  # the same process: a second napari window
    assert not first.read_only and second.read_only
    assert "another window" in second.read_only_reason
    held_here = r"not saved: this series is open in another window of this napari \(process \d+\)"
    with pytest.raises(PermissionError, match=held_here):
        second.save_labels(0, blob((24, 32)))
    second.go(2)  # a read-only window does not move the first one's place
    first.close()
    assert ImageSeries(series_dir).current == 0


def test_a_lock_held_by_a_live_process_is_respected_and_a_dead_ones_taken_over(series_dir):
    script = ("import sys, time; from napari_sam.series import ImageSeries; s = ImageSeries(sys.argv[1]); "
              "print(s.read_only, flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", script, str(series_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "False"
        here = ImageSeries(series_dir)
        assert here.read_only and f"napari process {holder.pid} on " in here.read_only_reason
        assert "lock" in here.read_only_reason
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its lock is stale and taken over.
    lock = series_dir / ".napari-sam" / "lock"
    assert lock.exists() and str(holder.pid) in lock.read_text()
    taken = ImageSeries(series_dir)
    assert not taken.read_only and str(os.getpid()) in lock.read_text()


def test_a_lock_from_another_host_is_respected(series_dir):
    (series_dir / ".napari-sam").mkdir()
    (series_dir / ".napari-sam" / "lock").write_text('{"pid": 1, "host": "microscope-pc", "since": "today"}')
    series = ImageSeries(series_dir)
    assert series.read_only and "process 1 on microscope-pc" in series.read_only_reason


def test_train_reads_a_series_whose_images_lie_in_the_folder_itself(series_dir):
    series = ImageSeries(series_dir)
    series.save_labels(0, blob((24, 32), 1))
    series.save_labels(2, blob((24, 32), 3))
    series.save_labels(1, blob((24, 32), 0))  # saved but empty: skipped by training with a warning
    with pytest.warns(UserWarning, match="no objects"):
        source = FolderSource(series_dir)
    assert sorted(e.image.name for e in source.entries) == ["img1.tiff", "img10.tif"]


def test_the_series_engine_imports_no_gui_toolkit():
    from test_imports import is_gui_module, modules_loaded_by

    loaded = modules_loaded_by("import napari_sam.series")
    assert "napari_sam.series" in loaded and [m for m in loaded if is_gui_module(m)] == []
    assert "torch" not in loaded  # opening a folder of images needs no model
