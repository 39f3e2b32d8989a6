"""Where a grid becomes proposals: segment everything's result, before the user accepts it.

The slow step, decoding the point grid of a slice (seconds), is done once per
slice and kept (:class:`~napari_sam.auto.DecodedGrid`); new thresholds
re-filter what is kept without the model, so the dock's sliders answer at once.
For a stack every slice is decoded, and its objects are linked through z
(:func:`napari_sam.auto.stack.link_slices`). The proposals are one label image
(a plane, or a stack), ``labels``; a dock draws ``shown``, the same image off
the user's objects.

Nothing the user made is touched here. Proposals lying mostly (at least half)
on objects already in the user's labels are not shown (``existing``): they
are found; the others are drawn off those objects. Nor are those lying
mostly where the user deleted a proposal. Accepting plans one change of the
user's labels (:func:`napari_sam.commit.plan_labelled`: one undo step,
committed objects kept unless ``overwrite``); what was accepted or deleted is
not proposed again when the thresholds change. Thread-safe: a background job adds slices
while the main thread reads ``labels``.

Each proposal is confident or unsure (:mod:`.confidence`): ``confident_ids``
are those one key accepts together; a stack's object is confident only when
every slice of it is.
"""

from __future__ import annotations

import threading

import numpy as np

from ..auto.decode import SegmentationCancelled
from ..auto.labels import as_mask, masks_to_labels
from ..auto.stack import link_slices
from ..commit import LabelChange, plan_labelled
from ..embeddings import plane_and_key
from .confidence import ConfidenceRule, confident_flags

#: The settings that re-filter a decoded grid (the others need the grid decoded again).
THRESHOLDS = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "min_mask_region_area")

#: A proposal with at least this share of its pixels on the user's objects counts as found already.
FOUND_FRACTION = 0.5


def _identity(record: dict) -> tuple:
    """Which grid candidate a record came from: the same one under any thresholds."""
    x, y = record["point_coords"][0]
    return tuple(record["crop_box"]), round(float(x), 3), round(float(y), 3), round(record["predicted_iou"], 6)


class Proposals:
    """The proposals for ``index`` of one image: a plane (``n_slices`` None) or a stack of ``n_slices``.

    ``index`` takes the plane or the stack out of the image (and out of its
    labels): ints for fixed axes, ``slice(None)`` for the covered ones.
    ``generator`` is the :class:`~napari_sam.auto.AutomaticMaskGenerator` that
    decoded the grids; its settings are the starting thresholds. ``rule``
    splits the proposals into confident and unsure.
    """

    def __init__(self, generator, index: tuple, plane_shape, n_slices: int | None = None, *,
                 link_iou: float = 0.3, existing=None, rule: ConfidenceRule | None = None) -> None:
        self.generator, self.index = generator, tuple(index)
        self.plane_shape, self.n_slices = tuple(plane_shape), n_slices
        self.link_iou = link_iou
        self.thresholds = {name: getattr(generator.settings, name) for name in THRESHOLDS}
        self._decoded: dict[int, object] = {}  # slice -> DecodedGrid
        self._records: dict[int, list[dict]] = {}  # slice -> records shown, by 2D label - 1
        self._flat: dict[int, np.ndarray] = {}  # slice -> its 2D proposals, before linking
        self._unsure: dict[int, list[int]] = {}  # slice -> its 2D labels that are not confident
        self.rule = rule if rule is not None else ConfidenceRule()
        self._gone: set[tuple] = set()  # candidates accepted or deleted
        self._existing = None if existing is None else np.asarray(existing)
        self._lock = threading.Lock()
        shape = self.plane_shape if n_slices is None else (n_slices, *self.plane_shape)
        self.labels = np.zeros(shape, dtype=np.uint32)
        self._deleted = np.zeros(shape, dtype=bool)  # where the user deleted proposals
        self.cancelled = False  # a stack's search was cancelled: the slices done are kept

    # ------------------------------------------------------------------ building
    @property
    def is_stack(self) -> bool:
        return self.n_slices is not None

    @property
    def slices_done(self) -> list[int]:
        return sorted(self._decoded)

    def add(self, z: int, decoded) -> None:
        """Slice ``z`` (0 for a plane) was decoded: its proposals are shown (linked when the stack is done)."""
        flat, records, unsure = self._filter(z, decoded, dict(self.thresholds))
        with self._lock:
            self._decoded[z], self._flat[z], self._records[z], self._unsure[z] = decoded, flat, records, unsure
            if not self.is_stack:
                self.labels = flat
            else:  # unlinked until the stack is done: ids of this slice after those of the others
                shown = self.labels.copy()
                top = int(shown.max(initial=0))
                shown[z] = np.where(flat > 0, flat + top, 0)
                self.labels = shown

    def link(self, progress=None, should_cancel=None) -> None:
        """Link the decoded slices of a stack into 3D objects (slices not decoded count as empty)."""
        if not self.is_stack:
            return
        empty = np.zeros(self.plane_shape, dtype=np.uint32)
        result = link_slices(lambda z: self._flat.get(z, empty), self.n_slices, link_iou=self.link_iou,
                             progress=progress, should_cancel=should_cancel)
        if result.cancelled:
            return
        with self._lock:
            self.labels = result.labels

    def refilter(self, **thresholds) -> np.ndarray:
        """Select again with new thresholds (no model runs); returns the new ``labels``."""
        unknown = sorted(set(thresholds) - set(THRESHOLDS))
        if unknown:
            raise ValueError(f"{', '.join(unknown)} cannot change without decoding again; re-filtering takes "
                             f"{', '.join(THRESHOLDS)}")
        self.generator.settings.replace(**{**self.thresholds, **thresholds})  # a wrong value is refused here
        self.thresholds.update(thresholds)
        self._refresh()
        return self.labels

    def _refresh(self) -> None:
        for z, decoded in list(self._decoded.items()):
            flat, records, unsure = self._filter(z, decoded, dict(self.thresholds))
            with self._lock:
                self._flat[z], self._records[z], self._unsure[z] = flat, records, unsure
        if self.is_stack:
            self.link()
        elif 0 in self._flat:
            with self._lock:
                self.labels = self._flat[0]

    def _filter(self, z: int, decoded, thresholds) -> tuple[np.ndarray, list[dict], list[int]]:
        records = self.generator.filter(decoded, output_mode="uncompressed_rle", **thresholds)
        records = [r for r in records if _identity(r) not in self._gone]
        # Found already (the user's objects cover it), or deleted (another grid point's candidate for it).
        taken = self._deleted[z] if self.is_stack else self._deleted
        existing = self._existing_plane(z)
        if existing is not None:
            taken = taken | (existing > 0)
        if taken.any():
            records = [r for r in records if taken[as_mask(r, self.plane_shape)].mean() < FOUND_FRACTION]
        flat, table = masks_to_labels(records, self.plane_shape)
        shown = [records[row["mask_index"]] for row in table]
        unsure = [k + 1 for k, sure in enumerate(confident_flags(shown, decoded, self.rule)) if not sure]
        return flat, shown, unsure

    def _existing_plane(self, z: int):
        if self._existing is None:
            return None
        return self._existing[z] if self.is_stack else self._existing

    # ------------------------------------------------------------------ the user's answer
    @property
    def shown(self) -> np.ndarray:
        """``labels`` as drawn: never over the user's objects. A proposal partly on one (their nucleus
        merged with a neighbour) shows its free part, which is all that accepting writes there unless
        overwriting is asked for; the user's object is not proposed again."""
        existing = self._existing
        return self.labels if existing is None else np.where(existing > 0, 0, self.labels).astype(self.labels.dtype)

    @property
    def ids(self) -> list[int]:
        """The proposals' labels, as ``labels`` shows them."""
        return [int(i) for i in np.unique(self.labels[self.labels > 0])]

    @property
    def confident_ids(self) -> list[int]:
        """The proposals the rule calls confident (a stack's: confident on every slice it lies on)."""
        with self._lock:
            labels, flats, unsure = self.labels, dict(self._flat), dict(self._unsure)
        doubtful = set()
        for z, flat in flats.items():
            if unsure.get(z):
                plane = labels[z] if self.is_stack else labels
                doubtful.update(np.unique(plane[np.isin(flat, unsure[z])]).tolist())
        return [i for i in self.ids if i not in doubtful]

    @property
    def unsure_ids(self) -> list[int]:
        sure = set(self.confident_ids)
        return [i for i in self.ids if i not in sure]

    def set_rule(self, rule: ConfidenceRule) -> None:
        """Split the proposals again with ``rule`` (no model runs)."""
        if not isinstance(rule, ConfidenceRule):
            raise ValueError(f"expected a ConfidenceRule, got {type(rule).__name__}")
        self.rule = rule
        self._refresh()

    def at(self, position) -> int:
        """The proposal at ``position`` (indices into ``labels``), 0 for none."""
        pos = tuple(int(round(p)) for p in position)
        if len(pos) != self.labels.ndim or any(not 0 <= p < n for p, n in zip(pos, self.labels.shape)):
            return 0
        if self._existing is not None and self._existing[pos] > 0:
            return 0  # the user's object: no proposal is drawn there (``shown``)
        return int(self.labels[pos])

    def accept(self, labels, ids=None, *, overwrite: bool = False) -> LabelChange:
        """The change that writes proposals ``ids`` (None: all) into the user's ``labels`` as new objects.

        Apply it (one undo step), then call :meth:`forget` with the same ids.
        """
        return plan_labelled(labels, self.labels, self.index, ids, overwrite=overwrite)

    def forget(self, ids=None, labels=None) -> None:
        """Proposals ``ids`` (None: all) were accepted or deleted: never proposed again here.

        ``labels``: the user's labels after an accept, so what they hold now counts as found.
        """
        with self._lock:
            chosen = np.isin(self.labels, self.ids if ids is None else list(ids))
            for z, flat in self._flat.items():
                plane = chosen[z] if self.is_stack else chosen
                for label in np.unique(flat[plane & (flat > 0)]):
                    self._gone.add(_identity(self._records[z][int(label) - 1]))
            if labels is not None:
                self._existing = np.asarray(labels[self.index]).copy()
            else:
                self._deleted |= chosen
        self._refresh()


# ---------------------------------------------------------------------- finding them
def generator_for(engine, settings: dict, source=None):
    """A generator on ``engine``'s model (its own predictor: the annotator's keeps its image)."""
    from ..auto import AutomaticMaskGenerator

    return AutomaticMaskGenerator(engine.new_predictor(), source=source, **settings)


def find_in_plane(session, workspace, settings: dict, slice_index, *, existing=None, rule=None, progress=None,
                  should_cancel=None) -> Proposals:
    """Segment everything on one plane of ``session``'s image, from the embedding the cache holds (or computes)."""
    planes, engine = session.planes, session.engine
    if engine is None:
        raise ValueError("load a model first (Load model, in this dock or in SAM Annotator)")
    s = planes.check_slice(slice_index)
    plane, key = plane_and_key(planes, s, engine)
    if plane.size == 0 or np.all(plane == plane.flat[0]):
        raise ValueError(f"{planes.describe(s)} is constant: there is nothing to segment")
    found = workspace.embeddings.get(key, plane, engine, planes.intensity_range(), use_store=workspace.use_store_for(planes),
                                     should_cancel=should_cancel)
    if found is None:
        raise SegmentationCancelled("cancelled while the slice was embedded")
    generator = generator_for(engine, settings, workspace.embeddings)
    decoded = generator.decode_grid(plane if generator.settings.crop_n_layers else None, embedding=found.embedding,
                                    intensity_range=planes.intensity_range(), slice_index=s, progress=progress,
                                    should_cancel=should_cancel)
    proposals = Proposals(generator, (*s, slice(None), slice(None)), plane.shape[:2], existing=existing, rule=rule)
    proposals.add(0, decoded)
    return proposals


def find_in_stack(session, workspace, settings: dict, index: tuple, *, existing=None, rule=None, on_slice=None,
                  progress=None, should_cancel=None) -> Proposals:
    """Segment everything slice by slice through the stack ``index`` takes out of the image, then link through z.

    ``on_slice(proposals, z)`` is called as each slice's proposals are in (shown unlinked
    until the end); cancelling keeps the finished slices (``proposals.cancelled``).
    """
    stack = workspace.stack_embeddings(session, index)
    generator = generator_for(session.engine, settings, workspace.embeddings)
    n = len(stack)
    proposals = Proposals(generator, index, np.asarray(stack.stack[0]).shape[:2], n_slices=n, existing=existing,
                          rule=rule)
    for z in range(n):
        plane = np.asarray(stack.stack[z])
        if should_cancel is not None and should_cancel():
            proposals.cancelled = True
            break
        if plane.size and not np.all(plane == plane.flat[0]):  # a blank slice has nothing to find
            try:
                decoded = generator.decode_grid(plane if generator.settings.crop_n_layers else None,
                                                embedding=stack.get(z), intensity_range=stack.intensity_range,
                                                should_cancel=should_cancel)
            except SegmentationCancelled:
                proposals.cancelled = True
                break
            proposals.add(z, decoded)
            if on_slice is not None:
                on_slice(proposals, z)
        if progress is not None:
            progress(z + 1, n)
    proposals.link()
    return proposals
