"""Checking that an image is a stack of 2D slices, and taking one stack out of a larger image.

A stack is (slices, rows, columns), or (slices, rows, columns, 3|4) for RGB(A)
slices. A 2D image is not a stack (embed it as one image instead); a 4D
image such as (time, z, y, x) holds many stacks: :func:`stack_through` takes
the one through the position the user looks at, along the axis they pick.
"""

from __future__ import annotations

import numpy as np


def check_stack(stack, rgb: bool = False):
    """Return ``stack`` if it is a usable stack of slices, else raise a ValueError/TypeError saying why.

    Lazy arrays (dask, zarr) are returned as they are, so slices are read one at a time.
    """
    if stack is None:
        raise TypeError("no stack given")
    if not hasattr(stack, "shape") or not hasattr(stack, "dtype") or not hasattr(stack, "__getitem__"):
        stack = np.asarray(stack)
    dtype = np.dtype(stack.dtype)
    if dtype == object or dtype.kind in "USVMmc":
        raise TypeError(f"the stack has dtype {dtype}; expected real numbers (uint8, uint16, float, bool ...)")
    ndim = len(stack.shape)
    slice_ndim = 3 if rgb else 2
    if ndim == slice_ndim:
        raise ValueError(
            f"the image of shape {tuple(stack.shape)} is a single 2D {'RGB image' if rgb else 'plane'}, not a stack: "
            "embed it as one image, or open a 3D stack (slices, rows, columns)"
        )
    if ndim != slice_ndim + 1:
        raise ValueError(
            f"the image has {ndim} dimensions {tuple(stack.shape)}; a stack is (slices, rows, columns"
            f"{', channels' if rgb else ''}). For a time series of stacks (t, z, y, x) take one stack first "
            "(napari_sam.volume.stack_through)"
        )
    if rgb and stack.shape[-1] not in (3, 4):
        raise ValueError(f"RGB slices need 3 or 4 channels in the last axis, got shape {tuple(stack.shape)}")
    if not rgb and looks_like_channels(stack.shape):
        rows, columns = stack.shape[-2:]
        raise ValueError(
            f"the stack of shape {tuple(stack.shape)} would have slices of {rows} x {columns} pixels: its last axis "
            f"({columns}) looks like colour channels, not image columns. For RGB(A) slices pass rgb=True "
            "(--rgb on the command line); otherwise take one channel first (stack[..., 0], --channel 0)"
        )
    if stack.shape[0] < 1 or stack.shape[1] < 2 or stack.shape[2] < 2:
        raise ValueError(f"the stack of shape {tuple(stack.shape)} is empty or its slices are smaller than 2x2")
    return stack


def looks_like_channels(shape) -> bool:
    """True when the last axis is far too short for image columns: 1 to 4 entries beside 8x as many rows.

    A (z, y, x, c) stack read without its channel axis in mind would
    otherwise be embedded as z*y slices of x by c pixels, without a word.
    """
    return len(shape) >= 2 and 1 <= shape[-1] <= 4 and shape[-2] >= 8 * shape[-1]


def stack_through(image, position, axis: int = -3, rgb: bool = False):
    """The 3D stack of ``image`` along ``axis`` through ``position`` (e.g. napari's current step).

    ``image`` has any number of leading axes before (rows, columns[, channels]);
    ``axis`` is the one to walk through (default: the one before the rows, z of
    (t, z, y, x)). ``position`` gives an index for every axis of the image; only
    those of the axes other than ``axis``, rows, columns and channels are used.
    Returns ``(stack, index)`` where ``index`` is the tuple that selects this stack
    from ``image`` (a label volume of the image's shape is written back with it).
    """
    shape = tuple(image.shape)
    plane_axes = 3 if rgb else 2
    ndim = len(shape)
    if ndim < plane_axes + 1:
        raise ValueError(f"the image of shape {shape} has no axis to walk through: it is a single plane")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    n_lead = ndim - plane_axes
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} does not exist in an image with {ndim} dimensions")
    axis = int(axis) % ndim
    if axis >= n_lead:
        raise ValueError(
            f"axis {axis} is one of the plane's own axes (rows, columns{', channels' if rgb else ''}) of shape "
            f"{shape}; pick one of the first {n_lead} axes"
        )
    try:
        pos = [int(round(float(p))) for p in position]
    except (TypeError, ValueError):
        raise TypeError(f"position must be a sequence of indices, got {position!r}") from None
    if len(pos) < n_lead:
        raise ValueError(f"position {tuple(position)} gives fewer indices than the image's {n_lead} leading axes")
    index = []
    for ax in range(n_lead):
        if ax == axis:
            index.append(slice(None))
        else:
            if not 0 <= pos[ax] < shape[ax]:
                raise ValueError(f"position {pos[ax]} on axis {ax} is outside the image (size {shape[ax]})")
            index.append(pos[ax])
    index = tuple(index) + (slice(None),) * plane_axes
    return image[index], index
