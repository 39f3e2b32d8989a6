"""The annotator's named layers: found again if they exist, created if not.

Layer names the user sees (and the README lists):

* ``SAM points``   - prompts: green = object (positive), magenta = background (negative)
* ``SAM boxes``    - box prompts (rectangles)
* ``SAM candidate 1..3: IoU 0.93`` - the three candidate masks of the current prompt
* ``SAM labels``   - the committed objects (uint32), never wiped by the plugin
* ``SAM proposals`` - segment everything's proposals, until accepted
* ``SAM gaps``     - regions with signal that no object or proposal covers, label = rank

Each layer also carries ``metadata["napari_sam"]`` (its role and the image it
belongs to), so renaming a layer does not lose it. Only napari API current
from 0.5 to the latest release is used (Points ``border_color``, not the
removed ``edge_color``).
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels, Points, Shapes

POINTS_NAME = "SAM points"
BOXES_NAME = "SAM boxes"
LABELS_NAME = "SAM labels"
PROPOSALS_NAME = "SAM proposals"
GAPS_NAME = "SAM gaps"
CANDIDATE_NAME = "SAM candidate"

POSITIVE_COLOR = "lime"
NEGATIVE_COLOR = "magenta"
SIGN = "sign"  # the Points feature holding "positive" / "negative"

_KEY = "napari_sam"


def plane_shape(image: Image) -> tuple[int, ...]:
    shape = image.data[0].shape if image.multiscale else image.data.shape
    return tuple(shape[:-3] if image.rgb else shape[:-2]), tuple(shape[-3:-1] if image.rgb else shape[-2:])


def spatial_shape(image: Image) -> tuple[int, ...]:
    lead, plane = plane_shape(image)
    return (*lead, *plane)


def _tag(role: str, image: Image) -> dict:
    return {_KEY: {"role": role, "image": image.name}}


def _role(layer) -> dict:
    meta = getattr(layer, "metadata", None) or {}
    value = meta.get(_KEY)
    return value if isinstance(value, dict) else {}


def _geometry(image: Image) -> dict:
    n = image.ndim
    return {"scale": tuple(image.scale[-n:]), "translate": tuple(image.translate[-n:])}


def _free_name(viewer, base: str, image: Image) -> str:
    names = {layer.name for layer in viewer.layers}
    return base if base not in names else f"{base} ({image.name})"


def _find(viewer, role: str, image: Image, kind: type, fits, base_name: str):
    """Our layer for this image: tagged for it, else an untagged one with the base name that fits."""
    for layer in viewer.layers:
        tag = _role(layer)
        if isinstance(layer, kind) and tag.get("role") == role and tag.get("image") == image.name and fits(layer):
            return layer
    for layer in viewer.layers:
        tag = _role(layer)
        if isinstance(layer, kind) and layer.name == base_name and not tag.get("image") and fits(layer):
            layer.metadata[_KEY] = _tag(role, image)[_KEY]
            return layer
    return None


def points_layer(viewer, image: Image) -> Points:
    ndim = image.ndim
    layer = _find(viewer, "points", image, Points, lambda lyr: lyr.ndim == ndim, POINTS_NAME)
    if layer is None:
        kwargs = dict(
            ndim=ndim,
            name=_free_name(viewer, POINTS_NAME, image),
            features={SIGN: np.array([], dtype=object)},
            face_color=SIGN,
            face_color_cycle={"positive": POSITIVE_COLOR, "negative": NEGATIVE_COLOR},
            border_color="white",
            size=max(3.0, min(spatial_shape(image)[-2:]) / 40),
            metadata=_tag("points", image),
            **_geometry(image),
        )
        try:
            # Without a default sign an empty layer has no "current colour" for napari's controls.
            layer = Points(np.zeros((0, ndim)), feature_defaults={SIGN: "positive"}, **kwargs)
        except TypeError:  # napari versions whose Points take no feature_defaults argument
            layer = Points(np.zeros((0, ndim)), **kwargs)
            layer.feature_defaults = {SIGN: "positive"}
        viewer.add_layer(layer)
    if SIGN not in layer.features:
        layer.features = {SIGN: np.full(len(layer.data), "positive", dtype=object)}
    return layer


def boxes_layer(viewer, image: Image) -> Shapes:
    ndim = image.ndim
    layer = _find(viewer, "boxes", image, Shapes, lambda lyr: lyr.ndim == ndim, BOXES_NAME)
    if layer is None:
        layer = Shapes(
            ndim=ndim,
            name=_free_name(viewer, BOXES_NAME, image),
            edge_color="yellow",
            face_color="transparent",
            edge_width=max(1.0, min(spatial_shape(image)[-2:]) / 250),
            metadata=_tag("boxes", image),
            **_geometry(image),
        )
        viewer.add_layer(layer)
    return layer


def _image_labels(viewer, image: Image, role: str, base_name: str, **kwargs) -> Labels:
    """Our uint32 Labels layer of ``role`` for ``image``, shaped and placed as its pixels (created if missing)."""
    shape = spatial_shape(image)
    layer = _find(viewer, role, image, Labels, lambda lyr: tuple(lyr.data.shape) == shape, base_name)
    if layer is None:
        layer = Labels(np.zeros(shape, dtype=np.uint32), name=_free_name(viewer, base_name, image),
                       metadata=_tag(role, image), **_geometry(image), **kwargs)
        viewer.add_layer(layer)
    return layer


def labels_layer(viewer, image: Image) -> Labels:
    """The user's objects for ``image``."""
    return _image_labels(viewer, image, "labels", LABELS_NAME)


def proposals_layer(viewer, image: Image) -> Labels:
    """Segment everything's proposals for ``image``, shaped as its labels, until the user accepts them."""
    return _image_labels(viewer, image, "proposals", PROPOSALS_NAME, opacity=0.5)


def gaps_layer(viewer, image: Image) -> Labels:
    """Where to look next for ``image``: uncovered regions with signal, labelled by their rank (1 first)."""
    return _image_labels(viewer, image, "gaps", GAPS_NAME, opacity=0.4)


def candidate_layers(viewer, image: Image) -> list[Labels]:
    """Three layers, each one plane deep, moved (translate) onto the current slice."""
    lead, plane = plane_shape(image)
    shape = (1,) * len(lead) + plane
    out = []
    for k in range(3):
        role = f"candidate-{k + 1}"
        layer = _find(viewer, role, image, Labels, lambda lyr: tuple(lyr.data.shape) == shape, "")
        if layer is None:
            layer = Labels(
                np.zeros(shape, dtype=np.uint8),
                name=_free_name(viewer, f"{CANDIDATE_NAME} {k + 1}", image),
                opacity=0.55,
                # Shown when it first has a candidate (candidate_layers.show): napari re-slices each
                # visible layer on every slider step, 3-5 ms per empty candidate layer here.
                visible=False,
                metadata=_tag(role, image),
                **_geometry(image),
            )
            viewer.add_layer(layer)
        out.append(layer)
    return out


def place_on_slice(layer, image: Image, slice_index: tuple[int, ...]) -> None:
    """Move a one-plane-deep layer onto ``slice_index`` of the image."""
    geom = _geometry(image)
    translate = np.array(geom["translate"], dtype=float)
    scale = np.array(geom["scale"], dtype=float)
    for axis, i in enumerate(slice_index):
        translate[axis] += i * scale[axis]
    if not np.allclose(layer.translate, translate):
        layer.translate = translate


def is_ours(layer) -> bool:
    return bool(_role(layer))


def has_layer(viewer, role: str, image: Image) -> bool:
    """Is there already a layer with ``role`` ("points", "labels" ...) for ``image`` in ``viewer``?"""
    return any(_role(lyr).get("role") == role and _role(lyr).get("image") == image.name for lyr in viewer.layers)


def image_layers(viewer) -> list[Image]:
    """The image layers a user may annotate (not our own candidate layers)."""
    return [lyr for lyr in viewer.layers if isinstance(lyr, Image) and not is_ours(lyr)]
