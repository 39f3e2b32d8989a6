import numpy as np
import pytest
from scipy import ndimage

from napari_sam.synthetic import make_tissue_2d


def test_tissue_cells_are_connected_numbered_and_touching():
    image, labels = make_tissue_2d(seed=4)
    assert image.shape == labels.shape == (256, 256) and image.dtype == np.uint8 and labels.dtype == np.uint32
    ids = np.unique(labels)
    assert list(ids) == list(range(int(labels.max()) + 1)) and labels.max() >= 10
    for i in ids[1:]:
        assert ndimage.label(labels == i)[1] == 1
    # Some cells share a border (no background between them), as in an epithelium.
    right = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
    assert right.sum() > 50


def test_borders_are_brighter_than_interiors():
    image, labels = make_tissue_2d(seed=1, noise=False, blur_sigma=0.0, gradient=0.0)
    inner = ndimage.binary_erosion(labels > 0, iterations=4)
    edge = (labels > 0) & ~ndimage.binary_erosion(labels > 0, iterations=1)
    assert image[edge].mean() > 2 * image[inner].mean()


def test_same_seed_same_tissue_and_other_dtypes():
    a, la = make_tissue_2d(seed=7)
    b, lb = make_tissue_2d(seed=7)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    image, _ = make_tissue_2d((64, 80), n_objects=(4, 6), seed=7, dtype=np.uint16, spacing_range=(15.0, 20.0))
    assert image.shape == (64, 80) and image.dtype == np.uint16


@pytest.mark.parametrize("bad", [dict(coverage=0.0), dict(spacing_range=(10.0, 5.0)), dict(warp=-1.0)])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ValueError):
        make_tissue_2d(seed=0, **bad)
