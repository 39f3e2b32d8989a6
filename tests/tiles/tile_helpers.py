"""Generated large images, an oracle segmenter and a reading spy for the tiling tests."""

import numpy as np

from napari_sam.synthetic import make_nuclei_2d


def large_truth(shape=(700, 900), seed=3, radius=(4.0, 14.0), n=(700, 700)):
    """True labels of many generated nuclei (largest diameter 28 px) filling a large plane."""
    _, labels = make_nuclei_2d(shape, n_objects=n, seed=seed, radius_range=radius, touching=0.5)
    return labels.astype(np.uint16)


class OracleSegmenter:
    """Finds exactly the true objects visible in a window, cut at its edge.

    The image it is given *is* the true label image, so a window's pixels say
    which objects (or which parts of them) it shows.
    """

    def __init__(self):
        self.calls = 0

    def generate(self, plane, **kwargs):
        self.calls += 1
        return [{"segmentation": plane == v, "predicted_iou": 1.0, "stability_score": 1.0}
                for v in np.unique(plane) if v != 0]


class ReadingSpy:
    """An array that records every slice asked for and refuses to be read whole."""

    def __init__(self, array):
        self._array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.reads = []

    def __getitem__(self, key):
        self.reads.append(key)
        return self._array[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was converted to numpy")


def same_objects(truth, labels) -> bool:
    """True when ``labels`` holds exactly the objects of ``truth``, each whole and once (numbers aside)."""
    truth, labels = np.asarray(truth), np.asarray(labels)
    if not np.array_equal(truth == 0, labels == 0):
        return False
    fg = truth > 0
    pairs = np.unique(np.stack([truth[fg], labels[fg]]), axis=1)
    return pairs.shape[1] == len(np.unique(truth[fg])) == len(np.unique(labels[fg]))
