"""napari-sam-annotator: Segment Anything for microscopists, inside napari.

The engine lives in :mod:`napari_sam.model` (torch + numpy only); the napari
widgets in :mod:`napari_sam.widgets`.
"""

__version__ = "0.1.0.dev0"
