"""Every contribution of the manifest, used the way napari itself uses it.

The list of docks, samples, readers and writers is read from ``napari.yaml``
with npe2, never written out here, so a contribution added to the manifest is
tested the day it is added. Each one goes through napari's own machinery: the
Plugins menu (napari's app-model commands), ``add_plugin_dock_widget``,
``open_sample``, ``viewer.open`` and ``layer.save``. These tests run against
the newest napari and, through dev.sh, the oldest supported one.
"""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import npe2
import numpy as np
import pytest
from qtpy.QtWidgets import QDockWidget, QWidget

import napari_sam
from napari_sam.writers import LABELS_FILE_PATTERNS, read_labels_tiff, write_labels_tiff

PLUGIN = "napari-sam-annotator"
MANIFEST_FILE = Path(napari_sam.__file__).with_name("napari.yaml")
MANIFEST = npe2.PluginManifest.from_file(MANIFEST_FILE)
CONTRIB = MANIFEST.contributions
WIDGETS = list(CONTRIB.widgets or ())
SAMPLES = list(CONTRIB.sample_data or ())
READERS = list(CONTRIB.readers or ())
LABELS_READERS = [r for r in READERS if r.command.endswith(".read_labels_tiff")]
WRITERS = list(CONTRIB.writers or ())
# Every dock is in napari's Plugins menu; the manifest may put it in more menus.
PLUGINS_MENU = "napari/plugins"
MENU_ENTRIES = [
    (widget, menu_id)
    for widget in WIDGETS
    for menu_id in [PLUGINS_MENU]
    + [mid for mid, items in (CONTRIB.menus or {}).items() if any(getattr(i, "command", None) == widget.command for i in items)]
]


def python_object(command_id: str):
    (command,) = [c for c in CONTRIB.commands if c.id == command_id]
    module, _, attr = command.python_name.partition(":")
    return getattr(importlib.import_module(module), attr)


def widget_class(widget) -> type:
    return python_object(widget.command)


def example_name(pattern: str) -> str:
    return pattern.replace("*", "cells")


def labels_tif_names() -> list[str]:
    return [example_name(p) for p in LABELS_FILE_PATTERNS]


@pytest.fixture
def napari_app(request, make_napari_viewer):
    """napari's app-model application that make_napari_viewer's viewers use (menus, commands).

    napari's pytest plugin names its fixture mock_app in 0.5 and mock_app_model later.
    """
    for name in ("mock_app_model", "mock_app"):
        try:
            return request.getfixturevalue(name)
        except pytest.FixtureLookupError:
            continue
    raise AssertionError("napari's pytest plugin provides no app-model fixture")


def settle(qtbot, widget) -> None:
    """Wait for background work a dock started by itself (the annotator loads the demo model)."""
    qtbot.wait(20)  # work a dock schedules for napari's next event-loop turn starts now
    if hasattr(widget, "is_idle"):
        qtbot.waitUntil(widget.is_idle, timeout=60000)


def check_docked(viewer, widget, widget_contribution, made) -> None:
    cls = widget_class(widget_contribution)
    assert isinstance(widget, cls)
    assert [w for w in made if isinstance(w, cls)] == [widget], "napari built the dock more than once"
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QDockWidget):
        parent = parent.parentWidget()
    assert parent is not None, "the widget is not inside a napari dock"
    assert widget_contribution.display_name in parent.windowTitle()
    # It got this viewer: it sees a layer added now.
    viewer.add_image(np.zeros((4, 4), np.uint8), name="door probe")
    assert "door probe" in [layer.name for layer in widget.viewer.layers]


# ------------------------------------------------------------------ manifest
def test_the_manifest_napari_uses_is_this_checkouts(make_napari_viewer):
    make_napari_viewer()
    used = npe2.PluginManager.instance().get_manifest(PLUGIN)
    assert used.contributions == CONTRIB
    assert WIDGETS and SAMPLES and READERS and WRITERS


def test_npe2_validate_passes_with_imports():
    npe2_command = Path(sys.executable).with_name("npe2")
    command = [str(npe2_command)] if npe2_command.exists() else [sys.executable, "-m", "npe2"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(MANIFEST_FILE.parents[1]), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([*command, "validate", str(MANIFEST_FILE), "--imports"], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("command", CONTRIB.commands, ids=lambda c: c.id)
def test_every_command_names_something_callable(command):
    assert callable(python_object(command.id))


@pytest.mark.parametrize("widget", WIDGETS, ids=lambda w: w.display_name)
def test_every_dock_is_a_class_napari_hands_the_viewer(widget):
    # napari fills the viewer in only for a QWidget (or magicgui Widget) class
    # whose __init__ has a parameter named napari_viewer (or typed Viewer); a
    # plain function gets called with no argument from the menus.
    cls = widget_class(widget)
    assert inspect.isclass(cls) and issubclass(cls, QWidget)
    assert "napari_viewer" in inspect.signature(cls.__init__).parameters


# --------------------------------------------------------------------- docks
@pytest.mark.parametrize("widget", WIDGETS, ids=lambda w: w.display_name)
def test_dock_opens_through_add_plugin_dock_widget(make_napari_viewer, qtbot, _settle_annotators, widget):
    viewer = make_napari_viewer()
    _dock, inner = viewer.window.add_plugin_dock_widget(PLUGIN, widget.display_name)
    settle(qtbot, inner)
    check_docked(viewer, inner, widget, _settle_annotators)
    # Asking again shows the same dock instead of building a second one.
    assert viewer.window.add_plugin_dock_widget(PLUGIN, widget.display_name)[1] is inner


def menu_commands(app, menu_id: str) -> list[str]:
    """Command ids of a menu of napari's app-model, its submenus included."""
    from app_model.types import SubmenuItem

    found = []
    for item in app.menus.get_menu(menu_id):
        if isinstance(item, SubmenuItem):
            found += menu_commands(app, item.submenu)
        else:
            found.append(item.command.id)
    return found


@pytest.mark.parametrize("widget, menu_id", MENU_ENTRIES, ids=lambda v: getattr(v, "display_name", v))
def test_dock_opens_from_its_menu_entry(make_napari_viewer, napari_app, qtbot, _settle_annotators, widget, menu_id):
    viewer = make_napari_viewer()
    # napari 0.5 names a dock's action "plugin:Display Name", later versions use the command id.
    ours = [c for c in menu_commands(napari_app, menu_id) if c in (widget.command, f"{PLUGIN}:{widget.display_name}")]
    assert len(ours) == 1, f"{widget.display_name} is not in menu {menu_id}"
    # What clicking the menu entry does: execute its command.
    napari_app.commands.execute_command(ours[0]).result()
    (inner,) = [w for w in _settle_annotators if isinstance(w, widget_class(widget))]
    settle(qtbot, inner)
    check_docked(viewer, inner, widget, _settle_annotators)


def test_annotator_opened_from_the_menu_loads_the_demo_model(make_napari_viewer, napari_app, qtbot, _settle_annotators):
    from napari_sam.widgets.annotator import AnnotatorWidget

    viewer = make_napari_viewer()
    (entry,) = [w for w in WIDGETS if widget_class(w) is AnnotatorWidget]
    command = [c for c in menu_commands(napari_app, PLUGINS_MENU) if c in (entry.command, f"{PLUGIN}:{entry.display_name}")]
    napari_app.commands.execute_command(command[0]).result()
    (annotator,) = _settle_annotators
    qtbot.waitUntil(lambda: annotator.engine is not None, timeout=60000)
    settle(qtbot, annotator)
    assert annotator.engine is not None and annotator.models.model_combo.currentText() == "demo"
    viewer.add_image(np.zeros((32, 32), np.uint8), name="cells")
    assert annotator.image_combo.findText("cells") >= 0


# ------------------------------------------------------------------- samples
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.key)
def test_sample_opens_through_open_sample(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, sample.key)
    expected = python_object(sample.command)()
    assert len(viewer.layers) == len(expected)
    for layer, (data, kwargs, layer_type) in zip(viewer.layers, expected):
        assert type(layer).__name__.lower() == layer_type
        assert layer.name == kwargs["name"]
        np.testing.assert_array_equal(np.asarray(layer.data), data)
        np.testing.assert_allclose(layer.scale, kwargs.get("scale", np.ones(layer.ndim)))


# ------------------------------------------------------------ reader, writer
def saved_labels(tmp_path, name):
    labels = np.zeros((3, 12, 16), np.uint32)
    labels[1, 2:6, 3:9] = 70000
    labels[2, 5:9, 1:4] = 3
    attrs = {"scale": (2.0, 0.5, 0.25), "translate": (4.0, 1.0, 0.0)}
    path = tmp_path / name
    write_labels_tiff(str(path), labels, attrs)
    return path, labels, attrs


@pytest.mark.parametrize("pattern", [p for r in LABELS_READERS for p in r.filename_patterns])
def test_reader_opens_through_viewer_open(make_napari_viewer, tmp_path, pattern):
    viewer = make_napari_viewer()
    path, labels, attrs = saved_labels(tmp_path, example_name(pattern))
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert type(layer).__name__ == "Labels"
    np.testing.assert_array_equal(layer.data, labels)
    np.testing.assert_allclose(layer.scale, attrs["scale"])
    np.testing.assert_allclose(layer.translate, attrs["translate"])


def test_reader_patterns_are_the_ones_the_code_claims():
    assert sorted(p for r in LABELS_READERS for p in r.filename_patterns) == sorted(LABELS_FILE_PATTERNS)
    assert {r.command.rsplit(".", 1)[1] for r in READERS} == {"read_labels_tiff", "read_ome_zarr"}


def test_an_ome_zarr_folder_opens_through_viewer_open_as_lazy_multiscale_layers(make_napari_viewer, tmp_path):
    import dask.array as da
    import zarr

    from napari_sam.batch.outputs import write_ome_zarr_labels

    labels = np.zeros((2, 700, 600), np.uint32)
    labels[:, 100:400, 200:500] = 5
    path = tmp_path / "scan.ome.zarr"
    write_ome_zarr_labels(path, labels, (3.0, 0.5, 0.5), {"version": "0.4", "axes": ["z", "y", "x"]})
    image = zarr.open_group(str(path), mode="a")  # an image at the root, beside its labels
    image.create_array("0", data=np.arange(2 * 700 * 600, dtype=np.uint16).reshape(2, 700, 600) % 4000,
                       chunks=(1, 256, 256), chunk_key_encoding={"name": "v2", "separator": "/"})
    image.attrs["multiscales"] = [{"version": "0.4", "name": "scan", "axes": [
        {"name": a, "type": "space"} for a in "zyx"], "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [3.0, 0.5, 0.5]}]}]}]
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert [type(layer).__name__ for layer in layers] == ["Image", "Labels"]
    img, lab = layers
    assert isinstance(img.data, da.Array)
    assert lab.multiscale and len(lab.data) >= 2
    np.testing.assert_allclose(lab.scale, (3.0, 0.5, 0.5))
    np.testing.assert_allclose(img.scale, (3.0, 0.5, 0.5))


def labels_layer():
    from napari.layers import Labels

    data = np.zeros((3, 10, 12), np.uint32)
    data[1, 2:5, 3:8] = 9
    return Labels(data, scale=(1.5, 0.5, 0.5), translate=(3.0, 0.0, 0.0), name="SAM labels")


@pytest.mark.parametrize(
    "writer, extension",
    [(w, e) for w in WRITERS for e in w.filename_extensions],
    ids=lambda v: v if isinstance(v, str) else v.command,
)
def test_writer_saves_through_layer_save(make_napari_viewer, tmp_path, writer, extension):
    make_napari_viewer()
    assert writer.layer_types == ["labels"]  # a new layer type needs its own layer here
    layer = labels_layer()
    path = tmp_path / f"cells{extension}"
    assert layer.save(str(path), plugin=PLUGIN) == [str(path)]
    data, attrs = read_labels_tiff(path)
    np.testing.assert_array_equal(data, layer.data)
    assert attrs["scale"] == tuple(layer.scale) and attrs["translate"] == tuple(layer.translate)


@pytest.mark.parametrize("name", labels_tif_names())
def test_a_labels_tif_name_is_saved_by_our_writer_without_naming_the_plugin(make_napari_viewer, tmp_path, name):
    make_napari_viewer()
    layer = labels_layer()
    (written,) = layer.save(str(tmp_path / name))
    assert read_labels_tiff(written)[1]["scale"] == tuple(layer.scale)


@pytest.mark.parametrize("name", labels_tif_names())
def test_labels_tif_names_pick_our_writer_even_when_napari_found_its_builtins_first(name):
    # The order in which napari finds plugins is the order of the installed
    # packages on disk, not ours to choose; rebuild it with napari's builtins first.
    from napari_builtins import __file__ as builtins_file

    pm = npe2.PluginManager()
    pm.register(npe2.PluginManifest.from_file(Path(builtins_file).with_name("builtins.yaml")))
    pm.register(MANIFEST)
    assert [w.command for w in pm.iter_compatible_writers(["labels"])][0].startswith("napari.")
    writer, _ = pm.get_writer(name, layer_types=["labels"])
    assert writer.command.startswith(PLUGIN + ".")


def test_first_use_makes_napari_open_labels_tifs_with_our_reader(make_napari_viewer, tmp_path):
    from napari.settings import get_settings

    viewer = make_napari_viewer()
    path, _, attrs = saved_labels(tmp_path, labels_tif_names()[0])
    pm = npe2.PluginManager.instance()
    pm.deactivate(PLUGIN)  # as in a fresh napari session (an earlier test may have used the plugin)
    assert not [p for p in LABELS_FILE_PATTERNS if p in get_settings().plugins.extension2reader]
    viewer.open_sample(PLUGIN, SAMPLES[0].key)  # the first use of the plugin activates it
    for pattern in LABELS_FILE_PATTERNS:
        assert get_settings().plugins.extension2reader[pattern] == PLUGIN
    # What File > Open and drag and drop do: no plugin named, the preference decides.
    (layer,) = viewer.open(str(path), plugin=None)
    np.testing.assert_allclose(layer.scale, attrs["scale"])


def test_the_reader_preference_keeps_a_users_own_choice_and_says_what_it_set(monkeypatch):
    import napari.utils.notifications as notifications
    from napari.settings import get_settings

    from napari_sam.widgets import prefer_labels_reader

    told = []
    monkeypatch.setattr(notifications, "show_info", told.append)
    settings = get_settings()  # this test's own, in memory (see _settle_annotators)
    settings.plugins.extension2reader = {"*.labels.tif": "napari", "*.tif": "napari"}
    assert prefer_labels_reader() == ["*.labels.tiff"]
    assert settings.plugins.extension2reader == {"*.labels.tif": "napari", "*.tif": "napari", "*.labels.tiff": PLUGIN}
    assert len(told) == 1 and "*.labels.tiff" in told[0] and "Preferences" in told[0]
    assert prefer_labels_reader() == [] and len(told) == 1  # set once, said once


def test_activation_never_fails_the_plugin(monkeypatch):
    import napari_sam.widgets as widgets

    def broken(settings=None):
        raise OSError("settings file is read-only")

    monkeypatch.setattr(widgets, "prefer_labels_reader", broken)
    with pytest.warns(UserWarning, match="read-only"):
        widgets.on_activate(None)
