"""napari side of the plugin: the "SAM Annotator" dock widget and its helpers."""


def make_annotator(napari_viewer):
    """npe2 widget command: the dock widget for ``napari_viewer``."""
    from .annotator import AnnotatorWidget

    return AnnotatorWidget(napari_viewer)
