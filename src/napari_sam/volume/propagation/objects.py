"""Several objects at once ("Propagate all"), one-to-one in every slice.

Each object walks as in :func:`~.walk.propagate`, with the other objects as
voxels it may not take (and as negative points for the model, so its mask
does not bleed into them). Two rounds, because an object walking first
does not yet know where the others will be:

1. each object walks knowing the other objects' annotated slices (their
   negative points are carried along the walk, see :mod:`.prompting`);
2. optionally (``rounds=2``), each object walks again knowing where the
   others went in round 1. Measured, it did not help: round 1's errors
   (a neighbour that bled) then push the right object out (mean 3D IoU
   0.740 with two rounds, 0.771 with one, bench_propagation.py).

Then each voxel goes to one object: an annotated voxel to its object, a
voxel two walks claim to the walk that also had it on the slice before
(nearer its annotation: an object's cross-sections overlap through z), and
among those to the walk that reached it in fewer steps from its annotation
(errors grow with every step), so no voxel ends in two objects. The result is one planned change of the
label volume (:class:`napari_sam.commit.LabelChange`), one undo step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ...commit import LabelChange, paintable
from ...progress import CancelCheck, ProgressCallback
from .results import PropagationResult
from .contested import split_contested
from .together import walk_together
from .walk import propagate, start_walks

NEGATIVES_PROMPT = ("box", "point", "negatives")
# Each object is clicked on one of its wide slices, so a walk whose mask grows to twice the smallest it has
# seen has run into a neighbour (below or above it in z) and stops there. Measured (bench_propagate_all.py,
# 44 nuclei): mean 3D IoU 0.830 -> 0.839, median 0.867 -> 0.872, none below 0.5 (was 1); 0.3 and 0.5 give
# the same, 1.5 and 2.0 0.837. A click on an object's pole slice would be cut here: pass max_regrowth=None.
MAX_REGROWTH = 1.0
# A voxel two walks claim goes first to a walk that also had it on its slice before (nearer its annotation): an
# object's cross-sections overlap from slice to slice, a walk that slid into its neighbour's slices does not
# overlap there. Measured (bench_propagation.py, Propagate all): mean 3D IoU 0.848 -> 0.853, worst 0.562 -> 0.575.
CLAIM_BY_CONTINUITY = True
# A voxel two walks claim goes first to the object a watershed of the slice's signal, flooded from each object's
# core, gives it (:mod:`.contested`): touching nuclei meet at a dim valley. Measured (benchmarks/_diag_ends.py,
# 44 nuclei): mean / median / worst 3D IoU 0.848 / 0.887 / 0.528 against 0.853 / 0.884 / 0.575 without: the worst
# objects' bleeding is along z (a walk sliding onto its neighbour's slices), where a split within a slice does not
# help, and cores taken from a slice that already bled flood the wrong way. Off.
SPLIT_BY_WATERSHED = False


@dataclass
class ObjectsResult:
    """What "Propagate all" found: each object's propagation, and the objects as one label volume."""

    objects: dict[int, PropagationResult] = field(default_factory=dict)  # object id -> its walk (round 2)
    labels: np.ndarray | None = None  # (Z, H, W): the objects written one-to-one (0 elsewhere)
    cancelled: bool = False

    def summary(self) -> str:
        lines = [f"{len(self.objects)} objects"]
        for oid, result in self.objects.items():
            lines.append(f"object {oid}: " + result.summary().replace("\n", "; "))
        if self.cancelled:
            lines.append("cancelled")
        return "\n".join(lines)


def propagate_objects(
    segmenter,
    annotations: Mapping[int, Mapping[int, np.ndarray]],
    n_slices: int | None = None,
    *,
    rounds: int = 1,
    together: bool = False,
    progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    **options,
) -> ObjectsResult:
    """Propagate every object of ``annotations`` ({object id: {slice: mask}}), one-to-one in each slice.

    ``options`` are those of :func:`~.walk.propagate` (``prompt`` defaults to
    box + point + negative points on the other objects, ``max_regrowth`` to :data:`MAX_REGROWTH`). ``progress(done,
    total)`` counts objects walked over all rounds.
    """
    if not isinstance(annotations, Mapping) or not annotations:
        raise ValueError("no objects to propagate: give {object id: {slice: mask}} with at least one object")
    for oid in annotations:
        if isinstance(oid, bool) or not isinstance(oid, (int, np.integer)) or oid <= 0:
            raise ValueError(f"object ids must be positive integers (0 is background), got {oid!r}")
    if rounds not in (1, 2):
        raise ValueError(f"rounds must be 1 or 2, got {rounds!r}")
    if "others" in options:
        raise TypeError("propagate_objects finds each object's others itself; do not pass others")
    options.setdefault("prompt", NEGATIVES_PROMPT)
    options.setdefault("max_regrowth", MAX_REGROWTH)
    if n_slices is None:
        n_slices = len(segmenter)
    shape = _plane_shape(annotations)
    seeds = np.zeros((n_slices, *shape), dtype=np.int64)  # every object's annotated slices
    for oid, anns in annotations.items():
        for z, m in anns.items():
            seeds[int(z)][np.asarray(m, dtype=bool) & (seeds[int(z)] == 0)] = oid

    if together and all(len(anns) == 1 for anns in annotations.values()):
        start = lambda anns, others: start_walks(segmenter, anns, n_slices, others=others,  # noqa: E731
                                                 should_cancel=should_cancel, **options)
        objects, labels = walk_together(annotations, n_slices, seeds, start, progress, should_cancel)
        return ObjectsResult(objects, labels, any(r.cancelled for r in objects.values()))
    out = ObjectsResult()
    total, done = rounds * len(annotations), 0
    if progress is not None:
        progress(0, total)
    known = seeds
    for round_ in range(rounds):
        found = {}
        for oid, anns in annotations.items():
            if should_cancel is not None and should_cancel():
                out.cancelled = True
                break
            others = np.where(known == oid, 0, known)
            found[oid] = propagate(segmenter, anns, n_slices, others=others, should_cancel=should_cancel, **options)
            out.cancelled |= found[oid].cancelled
            done += 1
            if progress is not None:
                progress(done, total)
        if out.cancelled:
            if round_ == 0:
                out.objects = found
            break
        out.objects = found
        known = _one_to_one(found, (n_slices, *shape), seeds, getattr(segmenter, "slice_image", None))
    out.labels = _one_to_one(out.objects, (n_slices, *shape), seeds, getattr(segmenter, "slice_image", None))
    return out


def propagate_all(segmenter, labels, slice_index: int, *, object_ids: Iterable[int] | None = None, **options):
    """"Propagate all": every object painted on slice ``slice_index`` of the (Z, H, W) ``labels``.

    Each object starts from every slice where it is painted (as :func:`propagate`
    with :func:`annotations_from_labels`). Returns an :class:`ObjectsResult`;
    :func:`plan_objects_change` turns it into one undo step.
    """
    labels = _check_volume(labels)
    if isinstance(slice_index, bool) or not isinstance(slice_index, (int, np.integer)) or not 0 <= slice_index < len(labels):
        raise ValueError(f"slice {slice_index!r} does not exist: the labels have {len(labels)} slices")
    ids = np.unique(labels[slice_index])
    ids = [int(i) for i in ids[ids > 0]] if object_ids is None else [int(i) for i in object_ids]
    if not ids:
        raise ValueError(f"slice {slice_index} holds no object: commit objects on it first, then propagate them all")
    annotations = {}
    for oid in ids:
        present = np.flatnonzero((labels == oid).any(axis=(1, 2)))
        if not present.size:
            raise ValueError(f"object {oid} is not in the labels: nothing to propagate")
        annotations[oid] = {int(z): labels[z] == oid for z in present}
    return propagate_objects(segmenter, annotations, len(labels), **options)


def plan_objects_change(labels, result: ObjectsResult, *, overwrite: bool = False) -> LabelChange:
    """The voxels "Propagate all" changes in ``labels``, as one change (one undo step).

    Each object takes only background and its own voxels (never another
    object the user made, unless ``overwrite``); no two objects of the result share a voxel.
    """
    labels = _check_volume(labels)
    if result.labels is None or result.labels.shape != labels.shape:
        raise ValueError("the result does not belong to labels of this shape")
    target = labels.copy()
    for oid in result.objects:
        target[paintable(labels, result.labels == oid, oid, overwrite)] = oid
    return volume_change(labels, target, tuple(result.objects))


def volume_change(labels: np.ndarray, target: np.ndarray, ids: tuple[int, ...]) -> LabelChange:
    """The change taking ``labels`` to ``target`` (same shape), over the whole volume."""
    where = np.nonzero(target != labels)
    return LabelChange(ids[0] if ids else 0, tuple(w.astype(np.intp) for w in where),
                       labels[where].copy(), target[where], ids)


def _one_to_one(results: Mapping[int, PropagationResult], shape, seeds: np.ndarray, plane_of=None) -> np.ndarray:
    """The objects in one volume, each voxel to one object: annotated voxels to their object; a voxel two
    walks claim to the object a watershed between their cores gives it (``plane_of(z)``: slice z's pixels,
    see :mod:`.contested`), then to a walk that had it on its slice before too (continuity through z), then
    to the walk that reached it in fewer steps from its annotation, as errors grow with every step."""
    out = seeds.copy()
    steps = np.where(seeds > 0, 0, np.iinfo(np.int32).max).astype(np.int32)
    ranks, toward = {}, {}
    for oid, result in results.items():
        annotated = np.array(sorted(z for z, s in result.slices.items() if s.status == "annotated"))
        if annotated.size == 0:
            continue
        offsets = np.arange(shape[0])[:, None] - annotated[None, :]
        nearest = np.abs(offsets).argmin(axis=1)
        distance = np.abs(offsets[np.arange(shape[0]), nearest]).astype(np.int32)
        rank = np.broadcast_to(distance[:, None, None], shape).copy()
        toward[oid] = np.arange(shape[0]) - np.sign(offsets[np.arange(shape[0]), nearest])
        if CLAIM_BY_CONTINUITY:
            continuous = result.mask & result.mask[toward[oid]]
            rank = rank + np.where(continuous, 0, shape[0]).astype(np.int32)  # after every continuous claim
        ranks[oid] = rank
    if plane_of is not None and SPLIT_BY_WATERSHED and len(ranks) > 1:
        _watershed_first(results, ranks, toward, seeds, plane_of)
    for oid, rank in ranks.items():
        nearer = results[oid].mask & (rank < steps)
        out[nearer] = oid
        steps[nearer] = rank[nearer]
    return out


def _watershed_first(results, ranks, toward, seeds, plane_of) -> None:
    """Give the contested voxels the watershed splits (:mod:`.contested`) a rank before every other claim."""
    claims = np.sum([results[oid].mask for oid in ranks], axis=0) * (seeds == 0)
    for z in np.flatnonzero((claims > 1).any(axis=(1, 2))):
        ids = [oid for oid in ranks if (results[oid].mask[z] & (claims[z] > 1)).any()]
        before = [None if toward[oid][z] == z else results[oid].mask[toward[oid][z]] for oid in ids]
        owner = split_contested(plane_of(int(z)), [results[oid].mask[z] for oid in ids], before)
        for i, oid in enumerate(ids):
            ranks[oid][z][(owner == i) & (claims[z] > 1)] = -1


def _plane_shape(annotations) -> tuple[int, int]:
    for anns in annotations.values():
        for m in anns.values():
            return tuple(np.asarray(m).shape)
    raise ValueError("no object to propagate: every object needs at least one annotated slice")


def _check_volume(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"expected (slices, rows, columns) labels, got shape {labels.shape}; "
                         "for a 4D stack take one stack first (napari_sam.volume.stack_through)")
    if labels.dtype.kind not in "ui":
        raise TypeError(f"labels must hold integer object ids, got dtype {labels.dtype}")
    return labels
