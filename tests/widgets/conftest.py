"""Fixtures of the widget tests: a stub engine factory, and docks that finish their work before napari closes."""

import os
import sys

import pytest
from fakes import StubFactory

@pytest.fixture
def stub_factory():
    """An engine factory for the docks that hands out one shared StubEngine per model name."""
    return StubFactory()


def has_display() -> bool:
    """napari's canvas needs a real (or virtual, Xvfb) display; Qt aborts the process without one."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def pytest_collection_modifyitems(config, items):
    # Skipped at collection: setting up a Qt fixture without a display would abort the whole run.
    if has_display():
        return
    skip = pytest.mark.skip(reason="napari viewer tests need a display: run them under xvfb-run (see dev.sh)")
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here) and "make_napari_viewer" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _settle_annotators(request, monkeypatch):
    """Let every annotator finish its background work before napari closes its viewer."""
    if "make_napari_viewer" not in request.fixturenames:
        yield
        return
    # Requested here so that this fixture's clean-up runs before the viewer is closed.
    request.getfixturevalue("make_napari_viewer")
    qtbot = request.getfixturevalue("qtbot")
    from napari_sam.widgets.annotator import AnnotatorWidget
    from napari_sam.widgets.volume import VolumeWidget

    made = []
    for cls in (AnnotatorWidget, VolumeWidget):
        original = cls.__init__

        def init(self, *args, __original=original, **kwargs):
            __original(self, *args, **kwargs)
            made.append(self)

        monkeypatch.setattr(cls, "__init__", init)
    yield
    sessions = []
    for widget in made:
        qtbot.waitUntil(widget.is_idle, timeout=20000)
        sessions += [link.session for link in widget.hub.links()]
        widget.shutdown()
    for session in sessions:  # no background thread outlives its test
        assert session.join(20), "a background job did not end"
