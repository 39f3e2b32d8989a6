"""Proposals: segment everything's result re-filtered without the model, accepted without touching the user's objects."""

import numpy as np
import pytest

from napari_sam.auto import AutomaticMaskGenerator
from napari_sam.auto.labels import masks_to_labels
from napari_sam.auto.metrics import iou_matrix
from napari_sam.commit import apply_change, undo_change
from napari_sam.model import load_model
from napari_sam.model.registry import DEMO_AUTO_SETTINGS
from napari_sam.session.confidence import ConfidenceRule
from napari_sam.session.proposals import Proposals
from napari_sam.synthetic import make_nuclei_2d, make_nuclei_3d

PLANE = (slice(None), slice(None))


@pytest.fixture(scope="module")
def generator():
    return AutomaticMaskGenerator(load_model("demo"), precision="fp32", **DEMO_AUTO_SETTINGS)


@pytest.fixture(scope="module")
def decoded_plane(generator):
    image, truth = make_nuclei_2d((256, 256), n_objects=(10, 12), seed=3)
    return image, truth, generator.decode_grid(image)


def plane_proposals(generator, decoded_plane, existing=None):
    image, _, decoded = decoded_plane
    proposals = Proposals(generator, PLANE, image.shape, existing=existing)
    proposals.add(0, decoded)
    return proposals


def test_the_same_objects_as_the_generator_and_new_thresholds_without_the_model(generator, decoded_plane):
    image, truth, decoded = decoded_plane
    proposals = plane_proposals(generator, decoded_plane)
    expected, _ = masks_to_labels(generator.filter(decoded), image.shape)
    assert np.array_equal(proposals.labels, expected) and len(proposals.ids) > 5
    first = proposals.labels.copy()
    strict = proposals.refilter(pred_iou_thresh=0.95)
    assert 0 < len(np.unique(strict)) - 1 < len(proposals.ids) + 1 <= len(np.unique(first))
    assert np.array_equal(proposals.refilter(pred_iou_thresh=DEMO_AUTO_SETTINGS["pred_iou_thresh"]), first)
    # The proposals are nuclei: most true nuclei have a proposal over most of their pixels.
    hits = [np.bincount(first[truth == t]).argmax() > 0 for t in np.unique(truth[truth > 0])]
    assert np.mean(hits) >= 0.7


def test_accepting_keeps_the_users_objects_and_is_one_undoable_change(generator, decoded_plane):
    image, truth, _ = decoded_plane
    user = np.zeros(image.shape, dtype=np.uint32)
    first = int(np.unique(truth[truth > 0])[0])
    user[truth == first] = 7  # drawn by hand before
    before = user.copy()
    proposals = plane_proposals(generator, decoded_plane)
    change = proposals.accept(user)
    assert change.object_ids == tuple(range(8, 8 + len(change.object_ids)))
    apply_change(user, change)
    assert np.array_equal(user[before == 7], before[before == 7])  # never overwritten
    assert set(np.unique(user)) == {0, 7, *change.object_ids}
    undo_change(user, change)
    assert np.array_equal(user, before)


def test_accepted_and_deleted_proposals_are_not_proposed_again(generator, decoded_plane):
    image, _, _ = decoded_plane
    proposals = plane_proposals(generator, decoded_plane)
    user = np.zeros(image.shape, dtype=np.uint32)
    one, other = proposals.ids[:2]
    at_one = proposals.labels == one
    change = proposals.accept(user, [one])
    assert change.object_ids == (1,) and np.all(user[at_one] == 0)
    apply_change(user, change)
    proposals.forget([one], labels=user)
    n = len(proposals.ids)
    assert not np.any(proposals.labels[at_one])
    at_other = proposals.labels == proposals.at(np.argwhere(proposals.labels > 0)[0])
    proposals.forget([proposals.at(np.argwhere(at_other)[0])])  # deleted
    assert len(proposals.ids) == n - 1 and not np.any(proposals.labels[at_other])
    proposals.refilter(pred_iou_thresh=0.3, stability_score_thresh=0.5)  # more proposals, none of those two
    assert not np.any(proposals.labels[at_one])
    assert all(at_other[proposals.labels == i].mean() < 0.5 for i in proposals.ids)  # nothing mostly on the deleted one


def test_proposals_on_the_users_objects_are_not_shown(generator, decoded_plane):
    image, truth, _ = decoded_plane
    proposals = plane_proposals(generator, decoded_plane)
    user = np.where(proposals.labels > 0, 1, 0).astype(np.uint32)  # everything found already
    assert plane_proposals(generator, decoded_plane, existing=user).ids == []


def test_a_proposal_partly_on_a_users_object_is_shown_only_off_it(generator, decoded_plane):
    proposals = plane_proposals(generator, decoded_plane)
    biggest = max(proposals.ids, key=lambda i: np.count_nonzero(proposals.labels == i))
    pixels = np.argwhere(proposals.labels == biggest)
    user = np.zeros(proposals.labels.shape, np.uint32)
    part = pixels[: len(pixels) * 3 // 10]  # 30 % of it: under the share that counts as found
    user[part[:, 0], part[:, 1]] = 7
    found = plane_proposals(generator, decoded_plane, existing=user)
    assert np.count_nonzero(found.shown[user > 0]) == 0 and found.at(part[0]) == 0
    rest = (proposals.labels == biggest) & (user == 0)
    assert np.count_nonzero(found.shown[rest]) == np.count_nonzero(rest)  # the rest of it is still proposed
    # Accepting writes only the free part; with overwriting asked for, the whole proposal.
    label = int(found.labels[tuple(part[0])])
    kept, replaced = user.copy(), user.copy()
    apply_change(kept, found.accept(user, [label]))
    assert np.all(kept[user > 0] == 7) and np.all(kept[rest] > 0)
    apply_change(replaced, found.accept(user, [label], overwrite=True))
    assert np.all(replaced[tuple(part.T)] != 7)


def test_what_cannot_be_done_is_said(generator, decoded_plane):
    image, _, _ = decoded_plane
    proposals = Proposals(generator, PLANE, image.shape)
    with pytest.raises(ValueError, match="no proposals to accept"):
        proposals.accept(np.zeros(image.shape, np.uint32))
    proposals = plane_proposals(generator, decoded_plane)
    with pytest.raises(ValueError, match="points_per_side cannot change without decoding again"):
        proposals.refilter(points_per_side=8)
    with pytest.raises(ValueError, match="pred_iou_thresh"):
        proposals.refilter(pred_iou_thresh=1.5)
    with pytest.raises(ValueError, match="no proposal has the label"):
        proposals.accept(np.zeros(image.shape, np.uint32), [9999])
    with pytest.raises(ValueError, match="proposals have shape"):
        proposals.accept(np.zeros((3, 3), np.uint32))


def test_a_stack_is_linked_through_z_and_accepted_into_its_own_time_point(generator):
    stack, truth = make_nuclei_3d((6, 128, 128), n_objects=(3, 4), seed=5, z_step=1.0, radius_range=(12.0, 18.0))
    index = (1, slice(None), slice(None), slice(None))  # time point 1 of a (t, z, y, x) image
    proposals = Proposals(generator, index, stack.shape[1:], n_slices=stack.shape[0])
    for z in range(stack.shape[0]):
        proposals.add(z, generator.decode_grid(stack[z]))
    unlinked = len(proposals.ids)
    proposals.link()
    assert 0 < len(proposals.ids) < unlinked  # objects seen on several slices are one object each
    spans = [len(np.unique(np.nonzero(proposals.labels == i)[0])) for i in proposals.ids]
    assert max(spans) >= 3
    user = np.zeros((2, *stack.shape), dtype=np.uint16)
    change = proposals.accept(user)
    apply_change(user, change)
    assert not user[0].any() and np.array_equal(user[1] > 0, proposals.labels > 0)
    assert len(np.unique(user[1])) - 1 == len(proposals.ids)


def test_confident_proposals_are_mostly_right_and_the_others_are_unsure(generator, decoded_plane):
    image, truth, _ = decoded_plane
    proposals = plane_proposals(generator, decoded_plane)
    sure, unsure = proposals.confident_ids, proposals.unsure_ids
    assert sure and sorted(sure + unsure) == proposals.ids and not set(sure) & set(unsure)
    iou = iou_matrix(truth, proposals.labels)  # true nuclei x proposals (ids in increasing order)
    best = dict(zip(proposals.ids, iou.max(axis=0)))
    assert np.mean([best[i] >= 0.9 for i in sure]) >= 0.9
    assert np.mean([best[i] >= 0.9 for i in sure]) > np.mean([best[i] >= 0.9 for i in unsure] or [0.0])
    # The rule decides: nothing asked, everything is confident; impossible agreement, nothing is.
    proposals.set_rule(ConfidenceRule(0.0, 0.0, 1))
    assert proposals.confident_ids == proposals.ids
    proposals.set_rule(ConfidenceRule(min_agreement=10_000))
    assert proposals.confident_ids == [] and proposals.unsure_ids == proposals.ids
    with pytest.raises(ValueError, match="min_agreement must be a whole number"):
        ConfidenceRule(min_agreement=0)
    with pytest.raises(ValueError, match="min_stability must be a number in"):
        ConfidenceRule(min_stability=2)


def test_accepting_the_confident_ones_leaves_the_unsure_and_the_users_objects(generator, decoded_plane):
    image, truth, _ = decoded_plane
    proposals = plane_proposals(generator, decoded_plane)
    sure, unsure = proposals.confident_ids, proposals.unsure_ids
    user = np.zeros(image.shape, dtype=np.uint32)
    mine = proposals.labels == sure[0]
    user[mine] = 3  # the user drew this one already (as the proposal, not shown when existing is given)
    change = proposals.accept(user, sure)
    apply_change(user, change)
    assert np.all(user[mine] == 3)  # not overwritten
    proposals.forget(sure, labels=user)
    assert proposals.confident_ids == [] or set(proposals.confident_ids).isdisjoint(sure)
    assert len(proposals.ids) == len(unsure)  # the unsure ones stay to be fixed or deleted


def test_a_stack_object_is_confident_only_when_every_slice_of_it_is(generator):
    stack, _ = make_nuclei_3d((4, 128, 128), n_objects=(3, 4), seed=5, z_step=1.0, radius_range=(12.0, 18.0))
    proposals = Proposals(generator, (slice(None),) * 3, stack.shape[1:], n_slices=stack.shape[0],
                          rule=ConfidenceRule(0.0, 0.0, 1))
    for z in range(stack.shape[0]):
        proposals.add(z, generator.decode_grid(stack[z]))
    proposals.link()
    assert proposals.confident_ids == proposals.ids
    target = proposals.ids[0]
    z = int(np.nonzero(proposals.labels == target)[0][0])
    piece = np.unique(proposals._flat[z][proposals.labels[z] == target])
    piece = [int(p) for p in piece if p]
    proposals._unsure[z] = piece  # one slice of the object is unsure: the whole object is
    assert target not in proposals.confident_ids and target in proposals.unsure_ids
