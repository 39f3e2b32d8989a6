"""Writing a chosen mask into a labels array, as one undoable change.

The labels array is the user's work: a commit must never silently damage
other objects. So a commit is planned first (:func:`plan_commit`), which
returns exactly which pixels change, their old and their new values
(:class:`LabelChange`). Applying that change and undoing it are then trivial,
and napari's ``Labels.data_setitem(indices, values)`` can apply it through the
layer's own undo history (Ctrl+Z / Ctrl+Shift+Z).

Rules:

* A new object gets ``max + 1`` (or the id the user asked for).
* By default pixels of other objects are kept (``overwrite=False``); with
  ``overwrite=True`` the new object takes them.
* Editing an object (``replace=True``) replaces it on this slice: its pixels
  outside the new mask become background, the mask's pixels become the object.
* Only the plane at ``slice_index`` is touched; the leading axes of a stack
  are given by ``slice_index`` (empty for a 2D labels array).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LabelChange:
    """Pixels that a commit changes: ``labels[indices]`` goes from ``old`` to ``new``."""

    object_id: int  # the object written (the first one for a change of many objects; 0 for none)
    indices: tuple[np.ndarray, ...]  # fancy indices into the full labels array
    old: np.ndarray
    new: np.ndarray
    object_ids: tuple[int, ...] = ()  # every object the change writes

    @property
    def n_changed(self) -> int:
        return int(self.old.size)

    def __bool__(self) -> bool:
        return self.n_changed > 0


def check_labels(labels) -> np.ndarray:
    """``labels`` itself, once it is known to be a numpy integer array of at least one plane."""
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"labels must be a numpy array, got {type(labels).__name__}")
    if labels.dtype.kind not in "ui":
        raise TypeError(f"labels must have an integer dtype (e.g. uint32), got {labels.dtype}")
    if labels.ndim < 2:
        raise ValueError(f"labels must have at least 2 dimensions (a plane), got shape {labels.shape}")
    return labels


def check_slice_index(labels: np.ndarray, slice_index) -> tuple[int, ...]:
    """The slice index as a tuple of ints, checked against the labels' leading axes."""
    try:
        index = tuple(int(i) for i in slice_index)
    except (TypeError, ValueError):
        raise TypeError(f"slice_index must be a tuple of integers, got {slice_index!r}") from None
    lead = labels.shape[:-2]
    if len(index) != len(lead):
        raise ValueError(
            f"slice_index {index} has {len(index)} value(s), but labels of shape {labels.shape} have "
            f"{len(lead)} axis/axes in front of the plane"
        )
    for i, n in zip(index, lead):
        if not 0 <= i < n:
            raise ValueError(f"slice_index {index} lies outside labels of shape {labels.shape}")
    return index


def _check_mask(mask, plane_shape) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        if arr.dtype.kind not in "uif":
            raise TypeError(f"mask must be boolean (or 0/1 numbers), got dtype {arr.dtype}")
        arr = arr > 0
    if arr.shape != tuple(plane_shape):
        raise ValueError(f"mask has shape {arr.shape} but the labels plane is {tuple(plane_shape)}")
    return arr


def check_object_id(object_id, labels: np.ndarray) -> int:
    """The object id as an int, once it is known to fit the labels' dtype (0 is the background)."""
    if isinstance(object_id, (bool, np.bool_)) or not isinstance(object_id, (int, np.integer)):
        raise TypeError(f"object id must be an integer, got {object_id!r}")
    value = int(object_id)
    top = np.iinfo(labels.dtype).max
    if not 1 <= value <= top:
        raise ValueError(f"object id must be between 1 and {top} for {labels.dtype} labels, got {value}")
    return value


def next_label_id(labels) -> int:
    """The id a new object gets: one more than the largest id in use (1 for empty labels)."""
    labels = check_labels(labels)
    new_id = int(labels.max(initial=0)) + 1
    if new_id > np.iinfo(labels.dtype).max:
        raise ValueError(f"no free object id left: {labels.dtype} labels already use id {new_id - 1}")
    return new_id


def plan_commit(
    labels,
    mask,
    slice_index=(),
    object_id: int | None = None,
    *,
    overwrite: bool = False,
    replace: bool = False,
) -> LabelChange:
    """Which pixels change when ``mask`` is written into ``labels[slice_index]``.

    ``object_id`` None means a new object (max + 1). ``replace=True`` edits an
    existing object (``object_id`` required): it becomes exactly ``mask`` on
    this slice, except where other objects are kept (``overwrite=False``).
    """
    labels = check_labels(labels)
    index = check_slice_index(labels, slice_index)
    plane = labels[index]
    mask = _check_mask(mask, plane.shape)
    if replace and object_id is None:
        raise ValueError("replace=True edits an existing object: give its object_id")
    oid = next_label_id(labels) if object_id is None else check_object_id(object_id, labels)
    if not mask.any() and not replace:
        raise ValueError("the mask is empty: there is nothing to commit")

    target = plane.copy()
    if replace:
        target[plane == oid] = 0
    target[paintable(plane, mask, oid, overwrite)] = oid
    return _change(plane, target, index, (oid,))


def paintable(existing: np.ndarray, mask: np.ndarray, object_id: int, overwrite: bool = False) -> np.ndarray:
    """The pixels of ``mask`` that object ``object_id`` may take in ``existing`` labels.

    The one keep-other-objects rule of the package: background and the
    object's own pixels, never another object's, unless ``overwrite``.
    """
    return mask if overwrite else mask & ((existing == 0) | (existing == object_id))


def plan_objects(labels, masks, slice_index=(), *, overwrite: bool = False) -> LabelChange:
    """One change that writes many new objects into ``labels[slice_index]`` (accepting proposals).

    ``masks`` are boolean planes; each becomes a new object with the next
    free id, in order. An object takes only pixels that are background (or,
    with ``overwrite``, those of objects that were there before): objects
    of this change never take each other's pixels. Empty masks are skipped.
    """
    labels = check_labels(labels)
    index = check_slice_index(labels, slice_index)
    plane = labels[index]
    target = plane.copy()
    claimed = np.zeros(plane.shape, dtype=bool)
    next_id, ids = next_label_id(labels), []
    top = np.iinfo(labels.dtype).max
    for mask in masks:
        mask = _check_mask(mask, plane.shape) & ~claimed
        if not mask.any():
            continue
        if next_id > top:
            raise ValueError(f"no free object id left in {labels.dtype} labels for {len(ids) + 1} more objects")
        take = paintable(plane, mask, next_id, overwrite)
        if not take.any():
            continue
        target[take] = next_id
        claimed |= take
        ids.append(next_id)
        next_id += 1
    return _change(plane, target, index, tuple(ids))


def plan_labelled(labels, proposals, index, ids=None, *, overwrite: bool = False) -> LabelChange:
    """One change that writes objects of a label image (proposals) into ``labels[index]`` as new objects.

    ``index`` takes the region ``proposals`` covers out of ``labels``: an int
    for every fixed axis, ``slice(None)`` for each axis covered (the plane's
    two, and z for a stack). ``ids`` are the proposals' labels to write (None:
    all). Each becomes a new object, numbered from the next free id in the
    order of ``ids``; as for one object, a committed object's pixels are kept
    unless ``overwrite``. A proposal left with no pixel to take is skipped.
    """
    labels = check_labels(labels)
    index = tuple(index)
    if len(index) != labels.ndim or not all(isinstance(i, slice) and i == slice(None) or isinstance(i, (int, np.integer))
                                            for i in index):
        raise ValueError(f"index {index!r} must give an int or slice(None) for each of the labels' {labels.ndim} axes")
    region = labels[index]
    proposals = np.asarray(proposals)
    if proposals.shape != region.shape:
        raise ValueError(f"the proposals have shape {proposals.shape}, the labels they go into {region.shape}")
    present = np.unique(proposals[proposals > 0])
    wanted = present if ids is None else np.asarray([int(i) for i in ids], dtype=np.int64)
    missing = np.setdiff1d(wanted, present)
    if missing.size:
        raise ValueError(f"no proposal has the label(s) {missing.tolist()}")
    if wanted.size == 0:
        raise ValueError("there are no proposals to accept: find objects first")
    lut = np.zeros(int(proposals.max()) + 1, dtype=np.int64)
    lut[wanted] = np.arange(1, wanted.size + 1)  # rank of each wanted proposal
    rank = lut[proposals]
    take = rank > 0
    if not overwrite:
        take &= region == 0
    where = np.nonzero(take)
    taken = np.unique(rank[where])  # proposals that keep some pixels, in the order of ids
    first = next_label_id(labels)
    if taken.size and first + taken.size - 1 > np.iinfo(labels.dtype).max:
        raise ValueError(f"no free object ids left in {labels.dtype} labels for {taken.size} more objects")
    new_id = np.zeros(wanted.size + 1, dtype=np.int64)
    new_id[taken] = first + np.arange(taken.size)
    return LabelChange(
        object_id=first if taken.size else 0,
        indices=to_image_indices(where, index),
        old=region[where].copy(),
        new=new_id[rank[where]].astype(labels.dtype),
        object_ids=tuple(int(i) for i in first + np.arange(taken.size)),
    )


def to_image_indices(indices: tuple[np.ndarray, ...], stack_index: tuple) -> tuple[np.ndarray, ...]:
    """Coordinates in a region (a stack, a plane) -> coordinates in the array it was taken from with ``stack_index``.

    ``stack_index`` gives an integer for every fixed axis and ``slice(None)``
    for each axis the region covers (as :func:`~napari_sam.volume.stack_through` returns it).
    """
    indices = tuple(np.asarray(i) for i in indices)
    free = [k for k, s in enumerate(stack_index) if isinstance(s, slice)]
    if len(free) != len(indices):
        raise ValueError(f"the stack index {stack_index!r} selects {len(free)} axes, got {len(indices)} coordinate arrays")
    n = len(indices[0]) if indices else 0
    out, it = [], iter(indices)
    for s in stack_index:
        out.append(next(it) if isinstance(s, slice) else np.full(n, int(s), dtype=np.intp))
    return tuple(out)


def _change(plane: np.ndarray, target: np.ndarray, index, ids: tuple[int, ...]) -> LabelChange:
    rows, cols = np.nonzero(target != plane)
    lead = tuple(np.full(rows.shape, i, dtype=np.intp) for i in index)
    return LabelChange(
        object_id=ids[0] if ids else 0,
        indices=(*lead, rows.astype(np.intp), cols.astype(np.intp)),
        old=plane[rows, cols].copy(),
        new=target[rows, cols],
        object_ids=ids,
    )


def apply_change(labels: np.ndarray, change: LabelChange) -> None:
    """Write a planned change into ``labels`` in place (without napari's history)."""
    labels[change.indices] = change.new


def undo_change(labels: np.ndarray, change: LabelChange) -> None:
    labels[change.indices] = change.old


def object_mask(labels, slice_index, object_id: int) -> np.ndarray:
    """The boolean mask of one object on one plane."""
    labels = check_labels(labels)
    index = check_slice_index(labels, slice_index)
    oid = check_object_id(object_id, labels)
    return np.asarray(labels[index]) == oid
