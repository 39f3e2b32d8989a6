"""Fixtures of the widget tests: a stub engine factory, and docks that finish their work before napari closes."""

import functools
import os
import threading

import pytest
from fakes import StubFactory, has_display

@pytest.fixture
def stub_factory():
    """An engine factory for the docks that hands out one shared StubEngine per model name."""
    return StubFactory()


def pytest_collection_modifyitems(config, items):
    # Skipped at collection: setting up a Qt fixture without a display would abort the whole run.
    if has_display():
        return
    skip = pytest.mark.skip(reason="napari viewer tests need a display: run them under xvfb-run (see dev.sh)")
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here) and "make_napari_viewer" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


def dock_classes() -> list[type]:
    """The dock classes the manifest names (a dock added there is covered here the same day)."""
    import importlib
    from pathlib import Path

    import npe2

    import napari_sam

    manifest = npe2.PluginManifest.from_file(Path(napari_sam.__file__).with_name("napari.yaml"))
    names = {w.command for w in manifest.contributions.widgets or ()}
    out = []
    for command in manifest.contributions.commands:
        if command.id in names:
            module, _, attr = command.python_name.partition(":")
            out.append(getattr(importlib.import_module(module), attr))
    return out


@pytest.fixture(autouse=True)
def _settle_annotators(request, monkeypatch):
    """Every SAM dock a test builds (itself or through napari) finishes its work before napari closes.

    Yields the list of docks built. ``__init__`` is wrapped keeping its
    signature: napari hands a dock its viewer only when ``napari_viewer`` is a
    parameter it can see. napari's settings stay in memory for the test (the
    plugin sets a reader preference the first time it is used).
    """
    from napari import settings as napari_settings

    monkeypatch.setattr(napari_settings, "_SETTINGS", napari_settings.NapariSettings(config_path=None))
    if "make_napari_viewer" not in request.fixturenames:
        yield []
        return
    # Requested here so that this fixture's clean-up runs before the viewer is closed.
    request.getfixturevalue("make_napari_viewer")
    qtbot = request.getfixturevalue("qtbot")
    made = []
    for cls in dock_classes():
        original = cls.__init__

        @functools.wraps(original)
        def init(self, *args, __original=original, **kwargs):
            __original(self, *args, **kwargs)
            made.append(self)

        monkeypatch.setattr(cls, "__init__", init)
    yield made
    sessions = []
    for widget in made:
        qtbot.waitUntil(widget.is_idle, timeout=30000)
        sessions += [link.session for link in widget.hub.links()]
        widget.shutdown()  # twice is harmless: a test may have closed it already
    for session in sessions:  # no background thread outlives its test
        assert session.join(20), "a background job did not end"
    qtbot.waitUntil(lambda: not [t for t in threading.enumerate() if t.name.startswith("napari-sam")], timeout=30000)


@pytest.fixture
def everything_errors(monkeypatch):
    """The error messages the SAM Everything dock and the hub show, instead of napari notifications."""
    from napari_sam.widgets import everything as E
    from napari_sam.widgets import hub as H

    seen = []
    monkeypatch.setattr(E, "show_error", seen.append)
    monkeypatch.setattr(H, "show_error", seen.append)
    return seen


@pytest.fixture
def make_everything(make_napari_viewer, qtbot, tmp_path):
    """make(data, name, **image_kwargs) -> (viewer, SAM Everything dock with the demo model loaded, idle)."""
    from napari_sam.embeddings import EmbeddingSource
    from napari_sam.session import Workspace
    from napari_sam.volume import EmbeddingStore
    from napari_sam.widgets import everything as E

    def make(data, name="nuclei", **kwargs):
        viewer = make_napari_viewer()
        workspace = Workspace(embeddings=EmbeddingSource(store=EmbeddingStore(tmp_path / "cache")))
        widget = E.EverythingWidget(viewer, workspace=workspace)
        viewer.add_image(data, name=name, **kwargs)
        widget.session.prefetch_enabled = False
        widget.models.choose("demo", precision="fp32")
        widget.models.load()
        qtbot.waitUntil(lambda: widget.session.engine is not None, timeout=EVERYTHING_TIMEOUT_MS)
        qtbot.waitUntil(widget.is_idle, timeout=EVERYTHING_TIMEOUT_MS)
        return viewer, widget

    return make


EVERYTHING_TIMEOUT_MS = 60000
