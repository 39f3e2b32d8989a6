"""The simulated annotator, with oracle predictors whose answers (and so the clicks needed) are known."""

import numpy as np
import pytest

from napari_sam.evaluation import annotate_image, annotated_labels, click_object, next_click
from napari_sam.evaluation.annotator import accepted_objects
from napari_sam.evaluation.scores import ImageResult, summarise


def rectangle(shape, y0, y1, x0, x1):
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


class Oracle:
    """Answers with the true object under the first positive click; ``halves`` first clicks give its left half only.

    Records every call, so a test can check what the annotator asked.
    """

    def __init__(self, truth, halves=1, never=False):
        self.truth, self.halves, self.never, self.calls = truth, halves, never, []

    def predict(self, point_coords, point_labels, mask_input=None, multimask_output=True):
        self.calls.append((np.array(point_coords), np.array(point_labels), mask_input, multimask_output))
        x, y = point_coords[0].astype(int)
        obj = self.truth == self.truth[y, x]
        if self.never:
            obj = np.zeros_like(obj)
            obj[0, 0] = True
        elif len(point_coords) <= self.halves:
            xs = np.flatnonzero(obj.any(0))
            obj = obj & (np.arange(obj.shape[1]) <= xs[0] + (len(xs) - 1) // 2)[None]
        n = 3 if multimask_output else 1
        # The second of three candidates is rated best: the annotator must pick it, not the first.
        masks = np.stack([np.zeros_like(obj), obj, np.zeros_like(obj)][:n] if n == 3 else [obj])
        scores = np.array([0.1, 0.9, 0.2][:n])
        return masks, scores, np.where(masks, 5.0, -5.0).astype(np.float32)[:, ::4, ::4]

    def predict_objects(self, point_coords, point_labels, mask_input=None, multimask_output=True):
        """SamPredictor.predict_objects' interface: one ``predict`` per object, stacked."""
        answers = [self.predict(point_coords[k], point_labels[k], None if mask_input is None else mask_input[k],
                                multimask_output) for k in range(len(point_coords))]
        return tuple(np.stack(part) for part in zip(*answers))


def test_first_click_is_at_the_centre_of_the_object():
    target = rectangle((40, 40), 10, 21, 5, 16)  # 11 x 11, centre (10, 15)
    (x, y), label = next_click(np.zeros_like(target), target)
    assert (x, y, label) == (10, 15, 1)


def test_a_deeper_wrong_region_gets_a_negative_click():
    target = rectangle((40, 40), 0, 10, 0, 10)
    predicted = target | rectangle((40, 40), 20, 35, 20, 35)  # a big false-positive blob
    (x, y), label = next_click(predicted, target)
    assert label == 0 and (x, y) == (27, 27)
    assert next_click(target, target) is None


def test_a_perfect_model_needs_one_click_per_object():
    truth = np.zeros((40, 60), np.int32)
    truth[rectangle((40, 60), 5, 15, 5, 25)] = 1
    truth[rectangle((40, 60), 20, 35, 30, 50)] = 2
    oracle = Oracle(truth, halves=0)
    results = annotate_image(oracle, truth)
    assert [r.clicks() for r in results] == [1, 1]
    assert [r.ious for r in results] == [[1.0], [1.0]]
    assert len(oracle.calls) == 2 and all(c[3] for c in oracle.calls)  # one multimask call each


def test_half_an_object_at_first_needs_a_second_positive_click_in_the_missing_half():
    truth = np.zeros((30, 40), np.int32)
    truth[rectangle((30, 40), 5, 15, 0, 20)] = 1  # 10 rows x 20 columns
    oracle = Oracle(truth, halves=1)
    result = click_object(oracle, truth == 1)
    assert result.clicks() == 2 and result.ious == [0.5, 1.0]
    (first, second), labels, mask_input, multimask = oracle.calls[1]
    assert list(labels) == [1, 1] and 10 <= second[0] < 20  # the missing right half
    assert not multimask and mask_input is not None and mask_input.shape == (1, 8, 10)  # logits fed back


def test_an_object_never_reached_costs_twenty_clicks():
    truth = np.zeros((30, 30), np.int32)
    truth[rectangle((30, 30), 5, 25, 5, 25)] = 1
    oracle = Oracle(truth, never=True)
    result = click_object(oracle, truth == 1)
    assert len(oracle.calls) == 20 and result.clicks() == 20 and not result.reached


def test_an_accepted_proposal_costs_no_click_and_the_scores_say_so():
    truth = np.zeros((40, 60), np.int32)
    truth[rectangle((40, 60), 5, 15, 5, 25)] = 1
    truth[rectangle((40, 60), 20, 35, 30, 50)] = 2
    proposals = np.zeros_like(truth)
    proposals[truth == 1] = 7  # exact
    proposals[rectangle((40, 60), 20, 35, 30, 40)] = 3  # half of object 2: IoU 0.5
    assert accepted_objects(truth, proposals) == {1}
    results = annotate_image(Oracle(truth, halves=1), truth, proposals)
    assert [r.accepted for r in results] == [True, False]
    assert [r.noc() for r in results] == [0, 2]
    scores = summarise([ImageResult(truth, proposals, results, 0.25)])
    assert scores == {"one_click_iou": 0.5, "noc90": 1.0, "accepted_share": 0.5, "msa": 0.25, "objects": 2}
    # A labelling session does not click what it accepted.
    oracle = Oracle(truth, halves=1)
    labelling = annotate_image(oracle, truth, proposals, click_accepted=False)
    assert [r.ious for r in labelling] == [[], [0.5, 1.0]] and len(oracle.calls) == 2


def test_the_annotated_labels_hold_accepted_clicked_and_hand_painted_masks():
    truth = np.zeros((30, 90), np.int32)
    truth[rectangle((30, 90), 5, 15, 0, 20)] = 1
    truth[rectangle((30, 90), 5, 15, 30, 50)] = 2
    truth[rectangle((30, 90), 5, 15, 60, 80)] = 3
    proposals = np.zeros_like(truth)
    proposals[rectangle((30, 90), 5, 15, 0, 19)] = 4  # IoU 0.95 with object 1
    results = annotate_image(Oracle(truth, halves=1), truth, proposals)
    results[2].ious, results[2].mask = [0.5], truth == 0  # never reached: painted by hand
    labels = annotated_labels(truth, proposals, results)
    assert np.array_equal(labels == 1, proposals == 4)  # the accepted proposal's own mask
    assert np.array_equal(labels == 2, truth == 2)  # clicked to IoU 1
    assert np.array_equal(labels == 3, truth == 3)  # the true mask
    with pytest.raises(ValueError, match="2D masks"):
        next_click(np.zeros((3, 3)), np.zeros((4, 4)))


def test_the_predictor_decodes_several_objects_as_one_at_a_time():
    import torch

    from napari_sam.model.build import build_sam, tiny_config
    from napari_sam.model.predictor import SamPredictor

    torch.manual_seed(0)
    predictor = SamPredictor(build_sam(tiny_config(64)).eval(), precision="fp32")
    predictor.set_image(np.random.default_rng(0).integers(0, 255, (48, 64), dtype=np.uint8))
    points = np.array([[[10.0, 12.0], [30.0, 20.0]], [[50.0, 40.0], [5.0, 5.0]]])
    labels = np.array([[1, 0], [1, 1]])
    logits = np.random.default_rng(1).normal(size=(2, 1, 16, 16)).astype(np.float32)
    masks, iou, low = predictor.predict_objects(points, labels, mask_input=logits, multimask_output=False)
    for k in range(2):
        m, s, lr = predictor.predict(point_coords=points[k], point_labels=labels[k], mask_input=logits[k],
                                     multimask_output=False)
        assert np.array_equal(masks[k], m)
        np.testing.assert_allclose(iou[k], s, atol=1e-5)
        np.testing.assert_allclose(low[k], lr, atol=1e-4)
    with pytest.raises(ValueError, match="mask_input must be"):
        predictor.predict_objects(points, labels, mask_input=logits[:1])
