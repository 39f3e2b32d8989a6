"""Image series: a folder annotated image after image, its labels saved beside it (no Qt here).

:class:`ImageSeries` lists the images and reads and saves their labels
(atomically, never over labels changed outside the app, one writing window
per series); :class:`Autosaver` decides when to save. The "SAM Series" dock
(``napari_sam.widgets.series``) is a thin view of them.
"""

from .autosave import Autosaver
from .files import TIFF_SUFFIXES, natural_key
from .folder import ImageSeries, Saved
from .lock import LockHolder, SeriesLock

__all__ = ["Autosaver", "ImageSeries", "LockHolder", "Saved", "SeriesLock", "TIFF_SUFFIXES", "natural_key"]
