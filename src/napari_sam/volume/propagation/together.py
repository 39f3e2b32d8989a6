"""Several objects walking through the stack together, one slice at a time ("Propagate all", ``together=True``).

Walking alone, an object knows its neighbours only on their annotated
slices; once it leaves them it may take what its neighbour will take, and
the two are only told apart at the end. Walking together, every walk takes
one step, then the slice each step reached is made one-to-one before any
walk goes on, so on every slice each object is prompted (negative points)
and shaped (voxels it may not take) with where its neighbours already are:

1. each object's walks (down and up from its annotated slice) step once,
   seeing the others as they stand (a slice another walk reached in fewer
   steps is theirs, as in the default's rule);
2. a pixel two objects took on the same step goes to the object whose mask
   on the slice before is nearer (an object moves little between slices);
3. the resolved masks are what the next step is prompted from.

Only objects annotated on one slice walk this way (one click each); with
several annotated slices per object the default walk is used.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage


class _OthersOf:
    """The other objects as one object's walk sees them on slice z, read from the shared labels when it gets there."""

    live = True

    def __init__(self, known: np.ndarray, oid: int):
        self.known, self.oid = known, oid

    def __getitem__(self, z):
        plane = self.known[z]
        return np.where(plane == self.oid, 0, plane)


def walk_together(annotations, n_slices: int, seeds: np.ndarray, start, progress=None, should_cancel=None):
    """{object id: PropagationResult} and the (Z, H, W) labels, one-to-one, walking every object a slice at a time.

    ``start(anns, others)`` sets up one object's walks (:func:`.walk.start_walks` with the caller's options).
    """
    known = seeds.copy()
    jobs, walks = {}, []
    for oid, anns in annotations.items():
        job, make, order = start(anns, _OthersOf(known, oid))
        jobs[oid] = job
        walks += [(oid, make(order[0], -1), 0), (oid, make(order[0], +1), n_slices - 1)]
    if progress is not None:
        progress(0, n_slices)
    for step in range(1, n_slices):
        reached: dict[int, list] = {}
        for oid, walk, last in walks:
            if walk.stop is not None or walk.index == last:
                continue
            jobs[oid].run(walk, walk.index + walk.direction)
            if walk.stop is None:
                reached.setdefault(walk.index, []).append((oid, walk))
            elif walk.stop.reason == "signal_rose_again":  # slices given back: free them for the others
                known[(known == oid) & ~jobs[oid].result.mask] = 0
        for z, contenders in reached.items():
            _resolve(z, contenders, jobs, known)
        if progress is not None:
            progress(step, n_slices)
        if not reached:
            break
    for oid, walk, _ in walks:
        jobs[oid].finish(walk, "stack_end")
    return {oid: job.result for oid, job in jobs.items()}, known


def _resolve(z: int, contenders, jobs, known: np.ndarray) -> None:
    """Make slice z one-to-one among the walks that reached it on this step, and write it to the shared labels."""
    masks = [jobs[oid].result.mask[z] for oid, _ in contenders]
    if len(contenders) > 1:
        claims = np.sum(masks, axis=0)
        if (claims > 1).any():
            # Contested pixels go to the object whose mask on the slice before is nearest.
            distance = np.stack([ndimage.distance_transform_edt(~w.before) if w.before.any()
                                 else np.full(masks[0].shape, np.inf) for _, w in contenders])
            distance[~np.stack(masks)] = np.inf
            owner = np.argmin(distance, axis=0)
            masks = [m & ((claims < 2) | (owner == i)) for i, m in enumerate(masks)]
    for (oid, walk), mask in zip(contenders, masks):
        result = jobs[oid].result
        if not mask.any():  # its neighbour took all of it: the walk ends on the slice before
            result.mask[z] = False
            del result.slices[z]
            walk.index, walk.mask = z - walk.direction, walk.before
            walk.end("taken_by_neighbour", rejected_slice=z)
            continue
        result.mask[z] = mask
        result.slices[z] = replace(result.slices[z], area=int(np.count_nonzero(mask)))
        walk.mask = mask
        known[z][mask & (known[z] == 0)] = oid

