"""The "SAM proposals" layer: the proposals drawn, confident ones in cool colours, unsure ones in warm ones.

One layer for both kinds, so a click works on any proposal whichever kind it
is (napari sends clicks to the selected layer only): click accepts one,
Alt+click deletes one. Neighbouring proposals of one kind still get different
shades, so touching nuclei stay apart.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from napari.utils.colormaps import DirectLabelColormap

from . import layers as L

#: Confident proposals: greens and cyans. Unsure ones: oranges and pinks (told apart at a glance).
CONFIDENT_COLOURS = ("#00e676", "#18ffff", "#76ff03", "#00bfa5", "#64ffda")
UNSURE_COLOURS = ("#ff9100", "#ff4081", "#ffd740", "#ff3d00", "#ea80fc")


def colours(confident, unsure) -> DirectLabelColormap:
    """A colour per proposal id: its kind's family, shade by id."""
    table = {None: "transparent", 0: "transparent"}
    for ids, family in ((confident, CONFIDENT_COLOURS), (unsure, UNSURE_COLOURS)):
        for i in ids:
            table[int(i)] = family[int(i) % len(family)]
    return DirectLabelColormap(color_dict=table)


class ProposalView:
    """Draws proposals into the image's "SAM proposals" layer; ``on_accept(ids)`` / ``on_delete(ids)`` on clicks."""

    def __init__(self, viewer, on_accept: Callable, on_delete: Callable) -> None:
        self.viewer, self.on_accept, self.on_delete = viewer, on_accept, on_delete
        self.layer = None
        self.proposals = None

    def show(self, image, proposals) -> None:
        """Draw ``proposals`` (None: clear) of ``image``, as ``proposals.shown`` has them."""
        self.proposals = proposals
        if self.layer is None or self.layer not in self.viewer.layers:
            self.layer = L.proposals_layer(self.viewer, image)
            self.layer.mouse_drag_callbacks.append(self._on_click)
        data = np.zeros_like(self.layer.data)
        sure, doubtful = [], []
        if proposals is not None:
            data[proposals.index] = proposals.shown
            sure = proposals.confident_ids
            chosen = set(sure)
            doubtful = [i for i in proposals.ids if i not in chosen]
        self.layer.colormap = colours(sure, doubtful)
        self.layer.data = data

    def unhook(self) -> None:
        if self.layer is not None and self._on_click in self.layer.mouse_drag_callbacks:
            self.layer.mouse_drag_callbacks.remove(self._on_click)
        self.layer, self.proposals = None, None

    def _on_click(self, layer, event) -> None:
        if event.type != "mouse_press" or event.button != 1 or self.proposals is None:
            return
        value = layer.get_value(event.position, view_direction=event.view_direction,
                                dims_displayed=event.dims_displayed, world=True)
        if value:
            alt = "Alt" in {str(getattr(m, "name", m)) for m in event.modifiers}
            (self.on_delete if alt else self.on_accept)([int(value)])
