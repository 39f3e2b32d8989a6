"""The image a session annotates, seen as planes: what SAM embeds is one 2D (or RGB) plane at a time.

An image has leading axes (z of a stack, t and z of a time series) and a
plane (the last two axes, plus colour for RGB). A *slice index* is the tuple
of indices on the leading axes: ``()`` for a 2D image, ``(z,)`` for a stack.

The intensity rule lives here too. A stack's planes are scaled to 8 bits
with one range for the whole image (see
:func:`napari_sam.model.image.stack_intensity_range`), so neighbouring slices
look alike to the model and a slice's embedding does not depend on which
slices were looked at first; "Embed stack", the ``embed`` command and the
annotator compute the same range and so share stored embeddings.
"""

from __future__ import annotations

import threading

import numpy as np

from ..model.image import stack_intensity_range

_UNSET = object()


class ImagePlanes:
    """Planes of one image (numpy, dask, zarr ...; for a multiscale image pass its full-resolution level)."""

    def __init__(self, data, *, rgb: bool = False, name: str = "image", axis_labels=None) -> None:
        if not hasattr(data, "shape") or not hasattr(data, "dtype") or not hasattr(data, "__getitem__"):
            data = np.asarray(data)
        dtype = np.dtype(data.dtype)
        if dtype == object or dtype.kind in "USVMmc":
            raise TypeError(f"image {name!r} has dtype {dtype}; SAM needs real numbers (uint8, uint16, float ...)")
        shape = tuple(int(n) for n in data.shape)
        plane_ndim = 3 if rgb else 2
        if len(shape) < plane_ndim:
            raise ValueError(f"image {name!r} of shape {shape} has no {'RGB ' if rgb else ''}plane to segment")
        if rgb and shape[-1] not in (3, 4):
            raise ValueError(f"image {name!r} has {shape[-1]} colour channels; expected 3 or 4")
        self.data = data
        self.rgb = bool(rgb)
        self.name = str(name)
        self.lead_shape = shape[: len(shape) - plane_ndim]
        self.plane_shape = shape[len(self.lead_shape) : len(self.lead_shape) + 2]
        if min(self.plane_shape) < 2:
            raise ValueError(f"image {name!r} has planes of {self.plane_shape} pixels; SAM needs at least 2 x 2")
        labels = list(axis_labels or [])[: len(self.lead_shape)]
        default = ["z"] if len(self.lead_shape) == 1 else [f"axis {k}" for k in range(len(self.lead_shape))]
        self.axis_labels = tuple(labels + default[len(labels) :])
        self._range = _UNSET
        self._range_lock = threading.Lock()

    @property
    def is_stack(self) -> bool:
        return bool(self.lead_shape)

    def slices(self) -> list[tuple[int, ...]]:
        """Every slice index, in order."""
        return [tuple(int(i) for i in idx) for idx in np.ndindex(*self.lead_shape)] if self.lead_shape else [()]

    def check_slice(self, slice_index) -> tuple[int, ...]:
        try:
            index = tuple(int(i) for i in slice_index)
        except (TypeError, ValueError):
            raise TypeError(f"a slice index is a tuple of integers, got {slice_index!r}") from None
        if len(index) != len(self.lead_shape) or any(not 0 <= i < n for i, n in zip(index, self.lead_shape)):
            raise ValueError(f"slice {index} does not exist in image {self.name!r} of shape {tuple(self.data.shape)}")
        return index

    def read(self, slice_index) -> np.ndarray:
        """The plane at ``slice_index`` as a numpy array (reads lazy arrays)."""
        return np.asarray(self.data[self.check_slice(slice_index)])

    def intensity_range(self) -> tuple[float, float] | None:
        """The range every plane of this image is scaled by (None: 8-bit data, or each 2D image its own).

        Computed once, on first use: for a large stack it reads every pixel,
        so the session asks for it in a background lane.
        """
        with self._range_lock:
            if self._range is _UNSET:
                self._range = stack_intensity_range(self.data) if self.lead_shape else None
            return self._range

    def describe(self, slice_index) -> str:
        """The slice in words: "slice 20", "t = 3, z = 20", or the image's name for a 2D image."""
        if not slice_index:
            return self.name
        if len(slice_index) == 1 and self.axis_labels[0] == "z":
            return f"slice {int(slice_index[0])}"
        return ", ".join(f"{label} = {int(i)}" for label, i in zip(self.axis_labels, slice_index))
