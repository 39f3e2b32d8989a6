import numpy as np
import pytest

from napari_sam.auto import rle
from napari_sam.auto.labels import masks_to_labels


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_the_smaller_mask_wins_where_masks_overlap():
    shape = (40, 60)
    big = _disc(shape, 20, 20, 12)
    small = _disc(shape, 20, 28, 5)  # inside big, on its right
    far = _disc(shape, 20, 50, 4)
    labels, table = masks_to_labels([big, small, far], shape)
    assert labels.dtype == np.uint32
    assert [r["label"] for r in table] == [1, 2, 3]  # numbered in the input order
    assert np.all(labels[small] == 2) and np.all(labels[far] == 3)
    assert np.array_equal(labels == 1, big & ~small)
    assert table[0]["area"] == int((big & ~small).sum())
    ys, xs = np.nonzero(far)
    assert (table[2]["bbox_x0"], table[2]["bbox_x1"], table[2]["bbox_y0"], table[2]["bbox_y1"]) == (
        xs.min(), xs.max() + 1, ys.min(), ys.max() + 1)


def test_a_mask_keeping_less_than_half_is_dropped():
    shape = (30, 30)
    a = np.zeros(shape, bool); a[0:10, 0:10] = True  # 100 px
    b = np.zeros(shape, bool); b[0:10, 0:12] = True  # 120 px, 20 of them free: dropped
    c = np.zeros(shape, bool); c[0:10, 5:25] = True  # 200 px, 150 free: kept
    labels, table = masks_to_labels([c, b, a], shape)
    assert [r["mask_index"] for r in table] == [0, 2]
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels == 1).sum() == 150 and (labels == 2).sum() == 100


def test_records_and_rle_are_accepted():
    shape = (20, 20)
    m = _disc(shape, 10, 10, 4)
    import torch

    rec = {"segmentation": rle.to_dict(rle.encode(torch.from_numpy(m[None]))[0], shape), "predicted_iou": 0.9,
           "stability_score": 0.95}
    labels, table = masks_to_labels([rec], shape)
    assert np.array_equal(labels == 1, m) and table[0]["predicted_iou"] == 0.9


def test_empty_and_wrong_inputs():
    labels, table = masks_to_labels([], (5, 6))
    assert labels.shape == (5, 6) and not labels.any() and table == []
    with pytest.raises(ValueError, match="does not fit"):
        masks_to_labels([np.ones((4, 4), bool)], (5, 6))
