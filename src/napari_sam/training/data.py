"""Training images and their instance labels, prepared exactly as the predictor sees images.

Two sources:

* ``generated``: synthetic fluorescence nuclei from :mod:`napari_sam.synthetic`
  (2D images under varied imaging conditions, plus single planes of 3D stacks).
  Every draw is fixed by (seed, step, slot), so an interrupted run resumes
  on the very same data.
* a folder laid out as ``DIR/images/NAME.tif`` with ``DIR/labels/NAME.tif``
  (same file name, any of .tif/.tiff), or an image series (``napari_sam.series``)
  whose images lie in ``DIR`` itself, beside ``DIR/labels/``. A label image is an integer image of
  the same height and width as its image: 0 background, 1..N objects. 3D
  stacks (Z, Y, X) with labels of the same shape are used plane by plane.

Every image goes through the predictor's rule (:func:`to_uint8_rgb`,
:func:`resize_longest_side`, padding to the square input); labels are resized
with nearest neighbour, so ids never blend, to the input size (where prompts
are placed) and to the low-resolution mask size (where the loss is computed).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_sam.model.image import encoder_input, resize_longest_side, to_uint8_rgb
from napari_sam.synthetic import SUPPORTED_DTYPES, iter_training_pairs, make_nuclei_3d

TIFF_SUFFIXES = (".tif", ".tiff")
# An object smaller than this many low-resolution mask pixels cannot be learned
# (it vanishes when the labels are downscaled); it is not used as a target.
MIN_LOW_RES_PIXELS = 4
# Share of generated samples that are single planes of a 3D stack.
FRACTION_3D = 0.15
# Crowded samples (GeneratedSource(crowded=...), ``train --crowded``): many small nuclei, nearly all pressed
# against a neighbour, over a wider brightness range, so a small dim nucleus often touches a bright one. The
# ordinary draw (touching 0-0.7, radii 6-30 px, brightness 0.3-0.8) makes such clusters rare, and the demo
# model rated a whole cluster's mask above the small nucleus clicked (the failures of _diag_ends.py --held-out).
CROWDED_TOUCHING = (0.7, 1.0)
CROWDED_RADII = (5.0, 16.0)
CROWDED_COUNT_2D = (20, 45)
CROWDED_COUNT_3D = (25, 45)
CROWDED_BRIGHTNESS = (0.15, 0.95)


@dataclass
class PreparedPair:
    """One image and its labels at the model's sizes."""

    pixels: np.ndarray  # (h, w, 3) uint8, resized so the longest side is the input size (not padded)
    labels: np.ndarray  # (S, S) int32 at the padded input size
    low_res_labels: np.ndarray  # (L, L) int32 at the low-resolution mask size

    def object_ids(self) -> np.ndarray:
        """Ids of the objects big enough to be learned at the low-resolution mask size."""
        ids, counts = np.unique(self.low_res_labels, return_counts=True)
        keep = (ids != 0) & (counts >= MIN_LOW_RES_PIXELS)
        return ids[keep]


def nearest_resize(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2D label image (samples each output pixel's centre)."""
    H, W = labels.shape
    h, w = shape
    rows = np.minimum(((np.arange(h) + 0.5) * (H / h)).astype(np.int64), H - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * (W / w)).astype(np.int64), W - 1)
    return labels[rows[:, None], cols[None, :]]


def check_labels(labels, image_shape: tuple[int, ...], name: str = "labels") -> np.ndarray:
    """The label image as an int32 array matching the image's height and width.

    Ids above 2**31 - 1 (int64/uint64 label images) are renumbered 1..N in
    the order of their values, each object keeping its own id.
    """
    arr = np.asarray(labels)
    if arr.dtype.kind not in "uib":
        raise TypeError(f"{name} must be an integer label image (0 background, 1..N objects), got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.shape != tuple(image_shape[:2]):
        raise ValueError(
            f"{name} have shape {arr.shape} but the image is {tuple(image_shape)}: "
            "the label image must have the image's height and width"
        )
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(f"{name} contain negative ids; use 0 for background and 1..N for objects")
    if arr.size and arr.dtype.itemsize >= 4 and arr.dtype != np.int32 and arr.max() > np.iinfo(np.int32).max:
        # Ids only tell objects apart, their values do not matter: renumber them
        # 1..N in order (0 stays background) instead of letting a cast wrap
        # 2**32 + 1 onto 1 and merge two objects.
        from skimage.segmentation import relabel_sequential

        arr = relabel_sequential(arr)[0]
    return arr.astype(np.int32, copy=False)


def prepare_pair(image, labels, image_size: int, low_res_size: int) -> PreparedPair:
    """Apply the predictor's image rule and bring the labels to the input and mask sizes."""
    prepared = to_uint8_rgb(image)
    lab = check_labels(labels, prepared.rgb.shape)
    resized = resize_longest_side(prepared.rgb, image_size)
    h, w = resized.shape[:2]
    padded = np.zeros((image_size, image_size), np.int32)
    padded[:h, :w] = nearest_resize(lab, (h, w))
    return PreparedPair(resized, padded, nearest_resize(padded, (low_res_size, low_res_size)))


def encoder_batch(pairs: list[PreparedPair], model) -> torch.Tensor:
    """Normalised, padded (B, 3, S, S) encoder input, as the predictor builds it."""
    device = model.pixel_mean.device
    return torch.cat(
        [encoder_input(p.pixels, model.pixel_mean, model.pixel_std, model.image_size, device, torch.float32) for p in pairs]
    )


# ------------------------------------------------------------------ sources
class GeneratedSource:
    """Endless synthetic nuclei: 2D images and planes of 3D stacks.

    ``crowded``: the share of samples drawn crowded (see CROWDED_TOUCHING), 2D and 3D planes in the same
    proportion as the others. At 0 (the default) no extra random number is drawn, so the samples are exactly
    those of a source without the option.
    """

    def __init__(self, size: int = 256, fraction_3d: float = FRACTION_3D, crowded: float = 0.0) -> None:
        if isinstance(crowded, bool) or not isinstance(crowded, (int, float)) or not 0 <= crowded <= 1:
            raise ValueError(f"--crowded must be a share of the samples in [0, 1], got {crowded!r}")
        self.size = size
        self.fraction_3d = fraction_3d
        self.crowded = float(crowded)
        self.description = "generated nuclei" + (f", {100 * self.crowded:.0f} % crowded" if self.crowded else "")

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        crowded = bool(self.crowded) and rng.random() < self.crowded
        if rng.random() < self.fraction_3d:
            dtype = SUPPORTED_DTYPES[int(rng.integers(len(SUPPORTED_DTYPES)))]
            extra = dict(n_objects=(8, 30))
            if crowded:
                extra = dict(n_objects=CROWDED_COUNT_3D, touching=float(rng.uniform(*CROWDED_TOUCHING)),
                             radius_range=CROWDED_RADII, brightness_range=CROWDED_BRIGHTNESS)
            stack, labels = make_nuclei_3d(
                (8, self.size, self.size), seed=rng, dtype=dtype,
                z_step=float(rng.uniform(1.0, 3.0)), blur_sigma=float(rng.uniform(0.5, 1.5)),
                photons=float(np.exp(rng.uniform(np.log(50.0), np.log(2000.0)))), **extra,
            )
            plane = int(rng.integers(2, 6))  # inner planes: the outer ones hold mostly caps of nuclei
            return stack[plane], labels[plane]
        if crowded:
            return next(iter_training_pairs(seed=rng, size=self.size, count=1, n_objects=CROWDED_COUNT_2D,
                                            radius_range=CROWDED_RADII, touching_range=CROWDED_TOUCHING,
                                            brightness_range=CROWDED_BRIGHTNESS))
        return next(iter_training_pairs(seed=rng, size=self.size, count=1))


@dataclass(frozen=True)
class _Entry:
    image: Path
    labels: Path
    plane: int | None  # index into a 3D stack, None for a 2D image


def image_and_label_folders(root: Path) -> tuple[Path, Path]:
    """``(DIR/images, DIR/labels)``, or ``(DIR, DIR/labels)`` for an image series (images in DIR itself)."""
    labels_dir = root / "labels"
    if (root / "images").is_dir() and labels_dir.is_dir():
        return root / "images", labels_dir
    if labels_dir.is_dir() and not (root / "images").exists() and any(
        p.suffix.lower() in TIFF_SUFFIXES for p in root.iterdir() if p.is_file()
    ):
        return root, labels_dir  # the layout of napari_sam.series: images beside their labels/ folder
    raise ValueError(
        f"{root} must contain two folders, images/ and labels/, holding TIFF files with matching names "
        "(images/cell01.tif with labels/cell01.tif), or be an image series: TIFF images in the folder itself "
        "with their labels in labels/ (cell01.tif with labels/cell01.tif)"
    )


class FolderSource:
    """Image/label TIFF pairs from ``DIR/images`` (or ``DIR``) and ``DIR/labels``, matched by file name."""

    def __init__(self, root) -> None:
        import tifffile  # noqa: F401  (fail early with the import error if missing)

        root = Path(root).expanduser()
        self.root = root
        if not root.is_dir():
            raise ValueError(f"training data folder {root} does not exist (or is not a folder)")
        images_dir, labels_dir = image_and_label_folders(root)
        labels_by_stem = {p.stem: p for p in sorted(labels_dir.iterdir()) if p.suffix.lower() in TIFF_SUFFIXES}
        pairs = [
            (p, labels_by_stem[p.stem])
            for p in sorted(images_dir.iterdir())
            if p.suffix.lower() in TIFF_SUFFIXES and p.stem in labels_by_stem
        ]
        if not pairs:
            raise ValueError(
                f"no image/label pairs in {root}: expected TIFF files in images/ with a label TIFF of the same "
                "name in labels/"
            )
        self.entries: list[_Entry] = []
        for image_path, labels_path in pairs:
            self.entries.extend(self._entries_of(image_path, labels_path))
        if not self.entries:
            raise ValueError(f"every label image in {labels_dir} is empty (no objects): nothing to train on")
        self.description = f"{len(pairs)} image/label pair(s) in {root}"

    @staticmethod
    def _entries_of(image_path: Path, labels_path: Path) -> list[_Entry]:
        import tifffile

        try:
            image = tifffile.imread(image_path)
            labels = tifffile.imread(labels_path)
        except Exception as err:  # tifffile raises many kinds for a bad file
            raise ValueError(f"cannot read {image_path.name} or its labels as TIFF: {err}") from None
        labels = np.asarray(labels)
        if labels.dtype.kind not in "uib":
            raise ValueError(f"{labels_path} is not an integer label image (dtype {labels.dtype})")
        is_stack = labels.ndim == 3 and labels.shape[-1] != 1
        if is_stack:
            if image.shape[:3] != labels.shape:
                raise ValueError(
                    f"{labels_path.name} has shape {labels.shape} but its image {image_path.name} has shape "
                    f"{image.shape}: a label stack must have the image's (planes, height, width)"
                )
            planes = [z for z in range(labels.shape[0]) if labels[z].any()]
        else:
            check_labels(labels, image.shape, name=labels_path.name)
            planes = [None] if labels.any() else []
        if not planes:
            warnings.warn(f"{labels_path} has no objects (all zero); it is skipped", stacklevel=3)
        return [_Entry(image_path, labels_path, z) for z in planes]

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        import tifffile

        entry = self.entries[int(rng.integers(len(self.entries)))]
        image = tifffile.imread(entry.image)
        labels = tifffile.imread(entry.labels)
        if entry.plane is not None:
            image, labels = image[entry.plane], labels[entry.plane]
        # Flips and quarter turns: microscopy has no preferred orientation.
        k = int(rng.integers(4))
        image, labels = np.rot90(image, k, axes=(0, 1)), np.rot90(labels, k, axes=(0, 1))
        if rng.random() < 0.5:
            image, labels = image[:, ::-1], labels[:, ::-1]
        return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def open_source(data, crowded: float = 0.0) -> GeneratedSource | FolderSource:
    """``"generated"`` (with that share of crowded samples) or a folder path -> a source of (image, labels) pairs."""
    if isinstance(data, (GeneratedSource, FolderSource)):
        return data
    if isinstance(data, str) and data == "generated":
        return GeneratedSource(crowded=crowded)
    if isinstance(data, (str, Path)):
        return FolderSource(data)
    raise TypeError(f"training data must be 'generated' or a folder path, got {data!r}")


def draw_prepared(source, seed: int, step: int, slot: int, image_size: int, low_res_size: int,
                  max_tries: int = 20) -> PreparedPair:
    """The pair for (step, slot): fixed by the seed, so a resumed run sees the same data.

    Draws again when a pair has no object big enough to learn from.
    """
    for attempt in range(max_tries):
        rng = np.random.default_rng([seed, step, slot, attempt])
        image, labels = source.draw(rng)
        pair = prepare_pair(image, labels, image_size, low_res_size)
        if len(pair.object_ids()):
            return pair
    raise ValueError(
        f"{max_tries} draws in a row from {source.description} held no object of at least "
        f"{MIN_LOW_RES_PIXELS} pixels at the model's mask resolution; the objects are too small for this model size"
    )
