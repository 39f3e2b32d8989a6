"""Merging each kept mask with its duplicates, and filling the gaps nothing kept covers (auto/consensus.py)."""

import numpy as np
import pytest
import torch

from napari_sam.auto import AutomaticMaskGenerator, rle
from napari_sam.auto.decode import CropCandidates, inclusive_boxes
from napari_sam.auto.generator import DecodedGrid
from napari_sam.auto.labels import masks_to_labels
from napari_sam.auto.settings import AutoSettings
from napari_sam.model import SamPredictor, load_model
from napari_sam.model.registry import DEMO_AUTO_SETTINGS
from napari_sam.synthetic import make_nuclei_2d

HW = (48, 48)


def disc(cy, cx, r):
    yy, xx = np.mgrid[: HW[0], : HW[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def grid_of(candidates):
    """A decoded grid of one whole-image crop holding ``(mask, predicted_iou, stability)`` candidates."""
    masks = torch.from_numpy(np.stack([m for m, _, _ in candidates]))
    crop = CropCandidates([0, 0, HW[1], HW[0]], 0, HW, 0.0, 0.0)
    crop.add(np.array([c[1] for c in candidates], np.float32), np.array([c[2] for c in candidates], np.float32),
             inclusive_boxes(masks).numpy(), np.zeros((len(candidates), 2)), rle.encode(masks))
    return DecodedGrid(HW, AutoSettings().decoding(), [crop])


@pytest.fixture(scope="module")
def generator():
    return AutomaticMaskGenerator(load_model("demo"), precision="fp32", pred_iou_thresh=0.6,
                                  stability_score_thresh=0.9, box_nms_thresh=0.5)


def object_a_duplicates():
    true = disc(12, 12, 7)
    bulge = true | disc(12, 20, 3)  # the best predicted IoU, but a bulge on the right
    dent = true & ~disc(12, 5, 3)  # a dent on the left
    return true, [(bulge, 0.95, 0.93), (dent, 0.90, 0.96), (true, 0.85, 0.95)]


def test_merging_gives_the_pixel_majority_of_the_duplicates(generator):
    true, dups = object_a_duplicates()
    grid = grid_of(dups)
    plain = generator.filter(grid)
    assert len(plain) == 1 and np.array_equal(plain[0]["segmentation"], dups[0][0])  # SAM keeps the bulge
    merged = generator.filter(grid, merge_duplicates_iou=0.7)
    assert len(merged) == 1
    assert np.array_equal(merged[0]["segmentation"], true)  # neither the bulge nor the dent has a majority
    assert merged[0]["area"] == int(true.sum())
    ys, xs = np.nonzero(true)
    assert merged[0]["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()), int(ys.max() - ys.min())]
    assert merged[0]["predicted_iou"] == pytest.approx(0.95)  # the kept candidate's scores stay


def test_only_duplicates_vote(generator):
    true, dups = object_a_duplicates()
    # A mask overlapping the kept one at IoU below the merge threshold does not vote.
    other = disc(12, 16, 7)
    grid = grid_of([dups[0], (other, 0.7, 0.95), (other, 0.7, 0.95)])
    merged = generator.filter(grid, merge_duplicates_iou=0.9, box_nms_thresh=0.99)
    assert np.array_equal(merged[0]["segmentation"], dups[0][0])


def test_nms_may_keep_the_most_stable_duplicate(generator):
    _, dups = object_a_duplicates()
    kept = generator.filter(grid_of(dups), nms_score="stability_score")
    assert len(kept) == 1 and np.array_equal(kept[0]["segmentation"], dups[1][0])  # stability 0.96


def test_gaps_are_filled_by_candidates_that_fell_short(generator):
    true, dups = object_a_duplicates()
    b = disc(34, 34, 6)  # confident enough, but not stable: SAM drops it
    grid = grid_of(dups + [(b, 0.75, 0.5)])
    assert len(generator.filter(grid)) == 1
    filled = generator.filter(grid, gap_fill_iou_thresh=0.7)
    assert len(filled) == 2 and np.array_equal(filled[1]["segmentation"], b)
    assert len(generator.filter(grid, gap_fill_iou_thresh=0.8)) == 1  # below the gap's own floor


def test_a_gap_filler_takes_only_open_pixels_and_none_that_is_mostly_covered(generator):
    true, dups = object_a_duplicates()
    near = disc(12, 27, 6)  # a little of it lies on the kept bulge
    covered = (near & dups[0][0]).sum() / near.sum()
    assert 0 < covered < 0.2
    mostly = disc(12, 17, 6)  # most of it lies on the kept mask
    grid = grid_of(dups + [(near, 0.75, 0.5), (mostly, 0.8, 0.5)])
    filled = generator.filter(grid, gap_fill_iou_thresh=0.7)
    assert len(filled) == 2
    assert np.array_equal(filled[1]["segmentation"], near & ~dups[0][0])
    assert not (filled[0]["segmentation"] & filled[1]["segmentation"]).any()


def test_the_new_settings_are_checked():
    with pytest.raises(ValueError, match="nms_score"):
        AutoSettings(nms_score="area")
    with pytest.raises(ValueError, match="merge_duplicates_iou"):
        AutoSettings(merge_duplicates_iou=1.5)
    with pytest.raises(ValueError, match="gap_fill_iou_thresh"):
        AutoSettings(gap_fill_iou_thresh=-0.1)
    assert AutoSettings(gap_fill_iou_thresh=0.5).decode_floors() == (0.5, 0.0)
    assert AutoSettings().decode_floors() == (0.88, 0.95)


def test_generate_keeps_what_gap_filling_needs():
    """generate() decodes with floors low enough for the gap's candidates: the same masks as decoding freely."""
    image = make_nuclei_2d((256, 256), seed=5005)[0]
    gen = AutomaticMaskGenerator(SamPredictor(load_model("demo"), precision="fp32"),
                                 **{**DEMO_AUTO_SETTINGS, "points_per_side": 16})
    assert gen.settings.fills_gaps and gen.settings.merge_duplicates_iou > 0
    direct = gen.generate(image)
    decoded = gen.decode_grid(image, refilter=True)
    free = gen.filter(decoded)
    assert len(direct) == len(free) > 0
    for a, b in zip(direct, free):
        assert np.array_equal(a["segmentation"], b["segmentation"])
    plain = gen.filter(decoded, gap_fill_iou_thresh=0.0)
    assert len(free) > len(plain)  # on this image the gaps filled are real additions (the test can fail)
    labels, _ = masks_to_labels(free, image.shape)
    assert labels.max() > len(plain) - 1


def test_a_grid_decoded_for_plain_thresholds_refuses_gap_filling(generator):
    image = make_nuclei_2d((128, 128), seed=5003)[0]
    decoded = generator.decode_grid(image, refilter=False)
    with pytest.raises(ValueError, match="fill gaps"):
        generator.filter(decoded, gap_fill_iou_thresh=0.5)
