"""Gaps: the parts of generated images with signal that no object covers, the missing nucleus first."""

import numpy as np
import pytest

from napari_sam.session.gaps import find_gaps
from napari_sam.synthetic import make_nuclei_2d, make_nuclei_3d


def without(truth, *ids):
    return np.where(np.isin(truth, ids), 0, truth)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_missing_nucleus_is_ranked_first(seed):
    image, truth = make_nuclei_2d((256, 256), seed=seed)
    ids = np.unique(truth[truth > 0])
    missing = ids[len(ids) // 2]
    gaps = find_gaps(image, without(truth, missing))
    assert len(gaps) >= 1 and gaps.gaps[0].rank == 1
    first = gaps.labels == 1
    on_nuclei = truth[first & (truth > 0)]
    assert (on_nuclei == missing).mean() > 0.95  # the first gap lies on the missing nucleus (and its blurred rim) ...
    assert (first & (truth == missing)).sum() > 0.5 * (truth == missing).sum()  # ... and covers most of it
    y, x = (int(round(c)) for c in gaps.gaps[0].centre)
    assert truth[y, x] == missing


def test_the_bigger_brighter_gap_comes_first_and_nothing_covered_is_a_gap():
    image, truth = make_nuclei_2d((256, 256), seed=1)
    ids = np.unique(truth[truth > 0])
    areas = {int(i): int((truth == i).sum()) for i in ids}
    small, big = min(areas, key=areas.get), max(areas, key=areas.get)
    gaps = find_gaps(image, without(truth, small, big))
    assert [g.rank for g in gaps.gaps] == list(range(1, len(gaps) + 1))
    first = (gaps.labels == 1) & (truth > 0)
    assert (truth[first] == big).mean() > 0.95
    assert all(a.score >= b.score for a, b in zip(gaps.gaps, gaps.gaps[1:]))
    assert len(find_gaps(image, truth)) == 0  # everything labelled: no gap, not even the objects' blurred rims
    assert len(find_gaps(np.full((64, 64), 7, np.uint8), np.zeros((64, 64)))) == 0  # a blank image


def test_a_stack_gap_is_connected_through_z():
    stack, truth = make_nuclei_3d((12, 128, 128), n_objects=(8, 12), seed=1)
    ids = np.unique(truth[truth > 0])
    missing = ids[2]
    gaps = find_gaps(stack, without(truth, missing))
    first = gaps.labels == 1
    assert (truth[first & (truth > 0)] == missing).mean() > 0.95
    assert len(np.unique(np.nonzero(first)[0])) >= 2  # several slices, one gap
    assert len(gaps.gaps[0].centre) == 3


def test_bad_input_is_refused_with_what_to_do():
    image = np.zeros((32, 32))
    with pytest.raises(ValueError, match="same plane or stack"):
        find_gaps(image, np.zeros((16, 16)))
    with pytest.raises(ValueError, match="RGB plane: average its channels"):
        find_gaps(np.zeros((2, 3, 32, 32)), np.zeros((2, 3, 32, 32)))
    with pytest.raises(ValueError, match="NaN"):
        find_gaps(np.full((32, 32), np.nan), np.zeros((32, 32)))
    with pytest.raises(ValueError, match="min_area"):
        find_gaps(image, image, min_area=0)
