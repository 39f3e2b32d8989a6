"""The sessions of one napari viewer: one per image layer, shared by every SAM dock.

Two docks on the same image (the annotator and the volume dock, say) get the
same :class:`~.link.ImageLink`, hence one session, one model choice, one set
of prompts and one "SAM labels". The hub also owns the viewer-wide keys
(C, Shift-C, T, E when another layer than ours is selected: they act on the
image last chosen in a dock) and closes a session when its image layer is
removed, so nothing keeps computing for an image that is gone. While a dock
is open, a view that showed the whole image stays whole when the docks narrow
the canvas (:mod:`.view_fit`).
"""

from __future__ import annotations

import weakref

from napari.utils.notifications import show_error, show_info, show_warning
from psygnal import Signal
from qtpy.QtCore import QCoreApplication

from ..session import Job, Lane, Workspace, shared_workspace
from .events import disconnect_quietly
from .link import ImageLink
from .tasks import MainThreadPost
from .view_fit import WholeImageInView

# By identity: napari's viewer models compare equal by their fields, so two viewers may be "equal".
_hubs: dict[int, tuple] = {}  # id(viewer) -> (weak reference to the viewer, its hub)


def hub_for(viewer, workspace: Workspace | None = None) -> "SessionHub":
    """The hub of ``viewer`` (made on first use, with ``workspace`` or the process's shared one)."""
    ref, hub = _hubs.get(id(viewer), (None, None))
    if ref is None or ref() is not viewer or hub.closed:
        hub = SessionHub(viewer, workspace or shared_workspace())
        _hubs[id(viewer)] = (weakref.ref(viewer, lambda _, key=id(viewer): _hubs.pop(key, None)), hub)
    elif workspace is not None and workspace is not hub.workspace:
        raise ValueError("this viewer's SAM docks already work with another workspace")
    return hub


class SessionHub:
    # A series dock opened an image of its series (the image layer): docks that start work on a
    # new image (automatic proposals in semi-automatic mode) listen here, not to every layer added.
    series_image_opened = Signal(object)

    def __init__(self, viewer, workspace: Workspace) -> None:
        self.viewer = viewer
        self.workspace = workspace
        self.post = MainThreadPost()
        self.closed = False
        self._links: list[ImageLink] = []
        self._docks: list = []  # the docks using this hub; the last one to close closes it
        self._preloading = Lane("model loading", self.post)
        self.active: ImageLink | None = None  # the image last chosen in a dock: viewer-wide keys act on it
        self._keys = {
            "c": lambda *_: self.active and self.active.commit(),
            "Shift-C": lambda *_: self.active and self.active.clear(),
            "t": lambda *_: self.active and self.active.toggle_sign(),
            "e": lambda *_: self.active and self.active.edit_label(),
        }
        for key, func in self._keys.items():
            try:
                viewer.bind_key(key, func, overwrite=True)
            except (TypeError, ValueError):  # older napari: no overwrite argument
                viewer.bind_key(key, func)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        self._view_fit = WholeImageInView(viewer)  # the docks take their width from the canvas
        app = QCoreApplication.instance()
        if app is not None:  # napari is quitting: start nothing new
            app.aboutToQuit.connect(self.close)

    def preload(self, spec) -> None:
        """Load a model before any image is chosen (a dock opened on an empty viewer), in the background."""
        if self.workspace.engines.loaded(spec) is None and not self._preloading.is_busy:
            self._preloading.submit(Job(lambda: self.workspace.engines.get(spec),
                                        failed=lambda err: notify_user("error", f"Could not load model {spec.describe()}: {err}")))

    def attach(self, dock) -> None:
        if all(d is not dock for d in self._docks):
            self._docks.append(dock)

    def detach(self, dock) -> None:
        """``dock`` closes; when it was the last one, every session stops."""
        self._docks = [d for d in self._docks if d is not dock]
        if not self._docks:
            self.close()

    def link_for(self, image) -> ImageLink:
        """The link (and session) of ``image``, made on first use."""
        link = self.existing(image)
        if link is None:
            link = ImageLink(self.viewer, image, self.workspace, self.post)
            link.session.notify.connect(notify_user)  # once per session, however many docks show it
            self._links.append(link)
        self.active = link
        return link

    def existing(self, image) -> ImageLink | None:
        return next((lnk for lnk in self._links if lnk.image is image), None)

    def links(self) -> list[ImageLink]:
        return list(self._links)

    def is_idle(self) -> bool:
        return not self._preloading.is_busy and all(link.session.is_idle() for link in self._links)

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        for link in [lnk for lnk in self._links if lnk.image is layer]:
            link.close()  # its embedding, if one runs, is dropped: the image is gone
            self._links.remove(link)
            if self.active is link:
                self.active = None

    def close(self) -> None:
        """napari closes: stop every session and unhook the viewer."""
        self.closed = True
        self._preloading.close()
        for link in self._links:
            link.close()
        self._links = []
        self.active = None
        for key in self._keys:
            try:
                self.viewer.bind_key(key, None)
            except (TypeError, ValueError, KeyError):
                pass
        disconnect_quietly(self.viewer.layers.events.removed, self._on_layer_removed)
        self._view_fit.close()


def notify_user(level: str, text: str) -> None:
    """A session's news as a napari notification (errors, a lost disk cache, dropped candidates)."""
    {"error": show_error, "warning": show_warning}.get(level, show_info)(f"SAM: {text}")
