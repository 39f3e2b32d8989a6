"""Reading a large plane piece by piece, never whole.

Any array-like that numpy-style slicing reads works: a numpy array or
``np.memmap``, a zarr array (``zarr.open(tifffile.imread(path, aszarr=True))``
or an OME-Zarr level), a dask array. Only windows of tiles (and, for the
contrast, bands of rows) are ever asked for, so memory holds a few tiles,
not the image.
"""

from __future__ import annotations

import numpy as np

from ..model.image import stack_intensity_range

#: Pixels sampled for the plane's contrast (the same percentile rule as one image: napari_sam.model.image).
RANGE_SAMPLE = 1 << 22
#: Pixels read at once while sampling: a band of rows of about this many pixels.
BAND_PIXELS = 1 << 24


def check_plane_array(array):
    """``array`` itself if it is a 2D plane or an RGB(A) image that can be sliced; a ValueError/TypeError if not."""
    if not all(hasattr(array, a) for a in ("shape", "dtype", "__getitem__")):
        if isinstance(array, (list, tuple)):
            array = np.asarray(array)
        else:
            raise TypeError(f"expected an array (numpy, zarr, dask, memmap), got {type(array).__name__}")
    shape, dtype = tuple(int(s) for s in array.shape), np.dtype(array.dtype)
    if dtype == object or dtype.kind not in "buif":
        raise TypeError(f"the image has dtype {dtype}; expected numbers (uint8, uint16, float ...)")
    rgb = len(shape) == 3 and shape[-1] in (3, 4)
    if len(shape) != 2 and not rgb:
        raise ValueError(
            f"the image has shape {shape}: tiles are cut from one 2D plane (rows, columns) or an RGB(A) image "
            "(rows, columns, 3|4); for a stack pass one plane at a time (e.g. array[z])")
    return array


def read_window(array, box) -> np.ndarray:
    """The pixels of ``box`` = (y0, y1, x0, x1) as a numpy array (a copy for memmaps: the file stays closed to writes)."""
    y0, y1, x0, x1 = box
    window = array[y0:y1, x0:x1]
    if hasattr(window, "compute"):  # dask
        window = window.compute()
    return np.array(window, copy=True)


def plane_intensity_range(array) -> tuple[float, float] | None:
    """One (low, high) for the whole plane, read band by band: every tile is then scaled alike.

    Scaling each tile by its own range would stretch an empty tile's noise to
    full contrast (and invent objects in it) and make an object look different
    on either side of a tile border. uint8 and bool planes need no range (None).
    """
    array = check_plane_array(array)
    if np.dtype(array.dtype) in (np.uint8, np.bool_):
        return None
    rows, columns = int(array.shape[0]), int(array.shape[1])
    channels = int(array.shape[2]) if len(array.shape) == 3 else 1
    stride = max(1, int(np.ceil(np.sqrt(rows * columns * channels / RANGE_SAMPLE))))
    band = max(stride, (BAND_PIXELS // max(columns * channels, 1)) // stride * stride)
    samples = []
    for y0 in range(0, rows, band):
        block = read_window(array, (y0, min(y0 + band, rows), 0, columns))
        block = block[..., :3] if channels > 3 else block  # alpha is not scaled
        samples.append(np.ascontiguousarray(block[::stride, ::stride]).reshape(-1))
    return stack_intensity_range(np.concatenate(samples))


class FixedAxes:
    """An array (numpy, zarr, dask ...) with some axes fixed (a slice of a stack, one channel, t = 0).

    ``array[index]`` would read the whole remaining plane from a zarr array;
    this view passes each window on as one index of the array instead, so a
    click on one slice of a large stack reads a tile, not the slice.
    ``index`` has one entry per axis: an int fixes it, ``slice(None)`` keeps it.
    """

    def __init__(self, array, index: tuple) -> None:
        self._array, self._index = array, tuple(index)
        self._free = [i for i, s in enumerate(self._index) if isinstance(s, slice)]
        self.shape = tuple(int(array.shape[i]) for i in self._free)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1:]
        full = list(self._index)
        for axis, k in zip(self._free, key):
            full[axis] = k
        return self._array[tuple(full)]

    def __array__(self, dtype=None, copy=None):
        data = np.asarray(self[()])
        return data if dtype is None else data.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def plane_of(stack, index=()):
    """The plane at leading ``index`` of ``stack`` as something :func:`read_window` reads lazily."""
    index = tuple(int(i) for i in index)
    if not index:
        return stack
    return FixedAxes(stack, (*index, *[slice(None)] * (len(stack.shape) - len(index))))
