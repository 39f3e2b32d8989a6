"""Splitting the pixels two walks of "Propagate all" both took, along the dim line between the two nuclei.

Two touching nuclei meet at a valley of their signal: each is bright inside,
and the blur between them dips where they touch. When the model's masks of
both reach across that valley, the pixels both walks took are split by a
watershed of the slice's smoothed signal, flooded from each object's *core*:
the part of its mask on this slice that no other walk took and that its own
mask on the slice before (nearer its annotation) also held. The core is what
the object surely is; the flood from it stops at the valley, where the other
object's flood meets it. A contested pixel then goes to the object whose
flood reached it; where no core floods it (no signal valley, no core), the
claim rules of :mod:`.objects` decide as before.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import watershed

from .signal import smoothed


def split_contested(plane, masks: list[np.ndarray], before: list[np.ndarray | None],
                    bright: bool | None = None) -> np.ndarray:
    """For each pixel the index (in ``masks``) of the object the watershed gives it, -1 where it gives none.

    ``masks``: each claiming object's (H, W) mask on this slice; ``before``: its mask on the slice before
    (towards its annotation, None on its annotated slice). ``bright``: the objects are brighter than their
    surroundings (None: found from the slice).
    """
    stack = np.stack([np.asarray(m, dtype=bool) for m in masks])
    claims = stack.sum(axis=0)
    owner = np.full(claims.shape, -1, dtype=np.int64)
    contested = claims > 1
    if not contested.any():
        return owner
    union = claims > 0
    rows, cols = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    window = (slice(max(rows[0] - 4, 0), rows[-1] + 5), slice(max(cols[0] - 4, 0), cols[-1] + 5))
    signal = smoothed(np.asarray(plane)[window])
    markers = np.zeros(signal.shape, dtype=np.int64)
    for i, mask in enumerate(stack):
        core = mask[window] & ~contested[window]
        if before[i] is not None and (core & np.asarray(before[i], dtype=bool)[window]).any():
            core &= np.asarray(before[i], dtype=bool)[window]  # the part it surely kept from the slice before
        markers[core] = i + 1
    if np.count_nonzero(np.unique(markers)) < 2:
        return owner  # one core or none: nothing to split between
    if bright is None:
        bright = float(np.median(signal[union[window]])) >= float(np.median(signal[~union[window]])) \
            if (~union[window]).any() else True
    flooded = watershed(-signal if bright else signal, markers, mask=union[window])
    out = owner[window]
    taken = contested[window] & (flooded > 0)
    index = flooded - 1
    # Only to an object that claimed the pixel itself.
    ok = taken & stack[:, window[0], window[1]][np.clip(index, 0, len(masks) - 1),
                                                 np.arange(index.shape[0])[:, None], np.arange(index.shape[1])]
    out[ok] = index[ok]
    owner[window] = out
    return owner
