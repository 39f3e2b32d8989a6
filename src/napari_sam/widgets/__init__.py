"""napari side of the plugin: the dock widgets and their helpers.

napari builds each dock from the class the manifest names (``napari.yaml``),
e.g. ``napari_sam.widgets.annotator:AnnotatorWidget``, and hands it the viewer
through the ``napari_viewer`` parameter of its ``__init__``: napari looks for
that name in ``inspect.signature(cls.__init__)``. A plain function in its place
gets no viewer from the Plugins menu, so every dock here is a class.
"""
