"""napari side of the plugin: the dock widgets and their helpers.

napari builds each dock from the class the manifest names (``napari.yaml``),
e.g. ``napari_sam.widgets.annotator:AnnotatorWidget``, and hands it the viewer
through the ``napari_viewer`` parameter of its ``__init__``: napari looks for
that name in ``inspect.signature(cls.__init__)``. A plain function in its place
gets no viewer from the Plugins menu, so every dock here is a class.
"""

from __future__ import annotations

import warnings

PLUGIN_NAME = "napari-sam-annotator"


def on_activate(context=None) -> None:
    """npe2 activation hook: napari calls it once, the first time the plugin is used.

    It must never raise: npe2 would then refuse the whole plugin.
    """
    try:
        prefer_labels_reader()
    except Exception as err:  # a settings problem must not cost the user the plugin
        warnings.warn(f"SAM Annotator: could not set the reader for *.labels.tif files: {err}", stacklevel=2)


def prefer_labels_reader(settings=None) -> list[str]:
    """Make napari open ``*.labels.tif`` files with our reader, unless the user chose another one.

    Without a preference napari asks which reader to use for every such file
    (File > Open, drag and drop), and its builtin reader drops the voxel size.
    Only our own file patterns are touched; a preference the user already has
    for them is kept. The user is told when it is set. Returns the patterns set.
    """
    from ..writers import LABELS_FILE_PATTERNS

    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    current = dict(settings.plugins.extension2reader)
    added = [pattern for pattern in LABELS_FILE_PATTERNS if pattern not in current]
    if not added:
        return []
    # Assigning a new dict (not updating in place) is what makes napari save it.
    settings.plugins.extension2reader = {**current, **dict.fromkeys(added, PLUGIN_NAME)}
    from napari.utils.notifications import show_info

    show_info(
        f"SAM Annotator: files named {' / '.join(added)} now open with its reader, which keeps their "
        "voxel size; change this in napari's File > Preferences > Plugins."
    )
    return added
