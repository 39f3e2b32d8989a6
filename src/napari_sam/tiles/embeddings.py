"""Embeddings of tiles, through the package's one lookup chain: memory -> the on-disk store -> the encoder.

A tile's embedding is keyed like any plane's (:func:`napari_sam.embeddings.slice_key`):
by the fingerprint of the tile's own pixels (their shape included), the
model, the precision and the contrast rule, which holds the *whole plane's*
intensity range. A tile therefore never takes a whole-plane entry or
another tile's: a different window has different pixels or a different
shape, hence another key. Its slice index (for messages only) says which
window it is: ``(*slice_index, y0, x0, y1, x1)`` (a plane's index has no such
four trailing numbers, and the key's identity does not use it anyway).

A tile embedded once (by a click, by automatic segmentation, by another
program sharing the store) is read back, not computed again.
"""

from __future__ import annotations

from ..embeddings import EmbeddingSource, slice_key
from ..model.embedding import ImageEmbedding
from .reading import read_window


class TileEmbeddings:
    """Embeddings of windows of one large plane, computed only when asked for.

    ``engine``: anything with ``embed(plane, intensity_range)``, ``model_id`` and
    ``precision`` (a :class:`~napari_sam.auto.AutomaticMaskGenerator`, or
    :class:`napari_sam.session.engine`'s engines).
    """

    def __init__(self, array, engine, *, source: EmbeddingSource | None = None, intensity_range=None,
                 slice_index=()) -> None:
        self.array = array
        self.engine = engine
        self.source = source if source is not None else EmbeddingSource()
        self.intensity_range = intensity_range
        self.slice_index = tuple(slice_index)

    def key(self, box, pixels=None):
        """The embedding key of window ``box`` = (y0, y1, x0, x1) (``pixels``: the window, if already read)."""
        pixels = read_window(self.array, box) if pixels is None else pixels
        y0, y1, x0, x1 = box
        return slice_key(pixels, (*self.slice_index, y0, x0, y1, x1), self.engine, self.intensity_range)

    def get(self, box, pixels=None) -> ImageEmbedding:
        """The embedding of window ``box``: from memory or the store, else computed and kept in both."""
        pixels = read_window(self.array, box) if pixels is None else pixels
        key = self.key(box, pixels)
        return self.source.get(key, pixels, self.engine, self.intensity_range).embedding

    def is_available(self, box) -> bool:
        """True when window ``box`` needs no encoder run."""
        y0, y1, x0, x1 = box
        return self.source.is_available(self.key(box), (y1 - y0, x1 - x0))
