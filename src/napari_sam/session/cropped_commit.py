"""Writing a candidate that is a bounding-box crop (a plane handled by tiles) into the labels.

The same rules as :func:`napari_sam.commit.plan_commit` (a new object gets
``max + 1``; other objects keep their pixels unless ``overwrite``; editing
replaces the object on this slice), but the mask is never blown up to the
plane: the new pixels are worked out inside the crop's box, so a click on a
10,000 x 10,000 slide costs the object's box, not the slide. Only an edit
also looks at the rest of the plane, for the old object's pixels outside
the box (they become background).
"""

from __future__ import annotations

import numpy as np

from ..commit import LabelChange, check_labels, check_object_id, check_slice_index, next_label_id, paintable


def plan_cropped_commit(labels, crop, offset, slice_index=(), object_id: int | None = None, *,
                        overwrite: bool = False, replace: bool = False) -> LabelChange:
    """Which pixels change when ``crop`` (bool, placed at ``offset`` = (row, column)) is written into ``labels``."""
    labels = check_labels(labels)
    index = check_slice_index(labels, slice_index)
    plane = labels[index]
    crop = np.asarray(crop, dtype=bool)
    oy, ox = (int(v) for v in offset)
    h, w = crop.shape
    if oy < 0 or ox < 0 or oy + h > plane.shape[0] or ox + w > plane.shape[1]:
        raise ValueError(f"the mask's box ({oy}, {ox}) + {crop.shape} lies outside the labels plane {plane.shape}")
    if replace and object_id is None:
        raise ValueError("replace=True edits an existing object: give its object_id")
    oid = next_label_id(labels) if object_id is None else check_object_id(object_id, labels)
    if not crop.any() and not replace:
        raise ValueError("the mask is empty: there is nothing to commit")

    region = plane[oy:oy + h, ox:ox + w]
    target = region.copy()
    rows, cols, old, new = [], [], [], []
    if replace:
        # The object's pixels outside the box go to background; inside it, the mask decides below.
        yy, xx = np.nonzero(plane == oid)
        outside = ~((yy >= oy) & (yy < oy + h) & (xx >= ox) & (xx < ox + w))
        rows.append(yy[outside]), cols.append(xx[outside])
        old.append(plane[yy[outside], xx[outside]].copy()), new.append(np.zeros(int(outside.sum()), plane.dtype))
        target[region == oid] = 0
    target[paintable(region, crop, oid, overwrite)] = oid
    ry, rx = np.nonzero(target != region)
    rows.append(ry + oy), cols.append(rx + ox)
    old.append(region[ry, rx].copy()), new.append(target[ry, rx])
    rows, cols = np.concatenate(rows).astype(np.intp), np.concatenate(cols).astype(np.intp)
    lead = tuple(np.full(rows.shape, i, dtype=np.intp) for i in index)
    return LabelChange(object_id=oid, indices=(*lead, rows, cols), old=np.concatenate(old).astype(plane.dtype),
                       new=np.concatenate(new).astype(plane.dtype), object_ids=(oid,))
