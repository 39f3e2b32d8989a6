"""Candidates to labels: the selected candidate written into the labels, and existing objects edited.

A mixin of :class:`~.session.AnnotationSession`. The caller applies the
returned :class:`~napari_sam.commit.LabelChange` as one undoable step. A
candidate of a plane handled by tiles is a bounding-box crop: its change is
planned inside that box (:mod:`.cropped_commit`), never on a full-plane mask.
"""

from __future__ import annotations

import numpy as np

from .. import commit as commits
from ..geometry import mask_box
from .cropped_commit import plan_cropped_commit


class Labelling:
    # ------------------------------------------------------------------ 4. candidates -> label
    def plan_commit(self, labels: np.ndarray, object_id: int | None = None, *, overwrite: bool = False):
        """The :class:`~napari_sam.commit.LabelChange` that writes the selected candidate into ``labels``.

        ``labels`` has the image's spatial shape. While an object is being
        edited (:meth:`start_edit`) its id is used and the object is replaced
        on this slice. Other objects keep their pixels unless ``overwrite``.
        """
        s, cands = self._slice, self.candidates()
        if cands is None:
            raise ValueError("Nothing to commit: place a prompt and wait for the candidates.")
        edit_id = self.book.get(s).edit_id
        if cands.offset is not None:
            return plan_cropped_commit(labels, cands.mask, cands.offset, s, edit_id or object_id,
                                       overwrite=overwrite, replace=edit_id is not None)
        return commits.plan_commit(
            labels, cands.mask, s, edit_id or object_id, overwrite=overwrite, replace=edit_id is not None
        )

    def start_edit(self, labels: np.ndarray, object_id: int) -> None:
        """Fix an existing object on this slice: its mask (and box) become the prompt; commit replaces it."""
        s = self._slice
        if s is None:
            raise ValueError("No slice is shown.")
        if self.engine is None:
            raise ValueError("Load a model first.")
        mask = commits.object_mask(labels, s, object_id)
        if not mask.any():
            raise ValueError(f"Object {object_id} is not on {self.describe(s)}.")
        # A plane handled by tiles has no one embedding for a whole-plane mask prompt: its box leads.
        logits = None if self._tiled_plane() else self.engine.mask_prompt(mask)
        self.book.start_edit(s, int(object_id), mask_logits=logits, box=mask_box(mask))
        self.say(f"Editing object {object_id}: add points to fix it, then commit (C) to replace it.")
        self._decode_prompt(s)

    def editing(self) -> int | None:
        s = self._slice
        return self.book.get(s).edit_id if s is not None and s in self.book else None
