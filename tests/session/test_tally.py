"""The semi-automatic counter: objects on this image, those from proposals, images done in the series."""

import numpy as np

from napari_sam.session.tally import SERIES_KEY, count, series_progress


def test_objects_and_those_from_proposals_are_counted():
    labels = np.zeros((8, 8), np.uint32)
    labels[0, :3] = [1, 2, 5]
    tally = count(labels, accepted_ids={2, 5, 9})  # 9 was accepted, then erased by the user
    assert (tally.objects, tally.from_proposals, tally.series_total) == (3, 2, None)
    assert tally.describe() == "3 objects on this image (2 from proposals)"
    assert count(np.zeros((4, 4))).describe() == "0 objects on this image"


def test_the_series_count_comes_from_the_image_metadata():
    tally = count(np.ones((2, 2), np.uint16), metadata={SERIES_KEY: {"done": 4, "total": 12}})
    assert tally.describe() == "1 object on this image (0 from proposals); 4 of 12 images done in the series"
    for unusable in ({}, {SERIES_KEY: None}, {SERIES_KEY: {"done": 5, "total": 3}}, {SERIES_KEY: {"done": "4"}},
                     {SERIES_KEY: {"done": True, "total": 2}}, None):
        assert series_progress(unusable) is None
