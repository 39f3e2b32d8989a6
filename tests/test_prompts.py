import numpy as np
import pytest

from napari_sam.prompts import Candidates, Prompt, PromptBook, choose_candidate, mask_to_logits


def result(k=3, hw=(8, 8), low=(4, 4), iou=(0.5, 0.9, 0.7), fill=0.0):
    masks = np.zeros((k, *hw), bool)
    low_res = np.stack([np.full(low, fill + i, np.float32) for i in range(k)])
    return masks, np.array(iou[:k]), low_res


def test_first_click_decodes_without_mask_input_and_best_candidate_is_selected():
    book = PromptBook()
    req = book.update((2,), Prompt.make([[3, 4]], [1]))
    assert req.slice_index == (2,) and req.mask_input is None and req.box is None
    assert req.point_coords.tolist() == [[3, 4]]
    cands = book.set_result(req, *result())
    assert cands.selected == 1  # highest IoU


def test_adding_a_point_feeds_back_the_selected_candidates_logits():
    book = PromptBook()
    req = book.update((), Prompt.make([[3, 4]], [1]))
    book.set_result(req, *result())
    book.select((), 2)
    req2 = book.update((), Prompt.make([[3, 4], [5, 5]], [1, 0]))
    assert req2.mask_input.shape == (1, 4, 4)
    assert np.all(req2.mask_input == 2)  # logits of candidate 3 (index 2)
    assert req2.point_labels.tolist() == [1, 0]


def test_moving_or_removing_a_point_or_changing_the_box_drops_the_feedback():
    book = PromptBook()
    req = book.update((), Prompt.make([[3, 4]], [1]))
    book.set_result(req, *result())
    req = book.update((), Prompt.make([[3, 4], [6, 6]], [1, 1]))
    assert req.mask_input is not None
    book.set_result(req, *result())
    assert book.update((), Prompt.make([[3, 4], [7, 6]], [1, 1])).mask_input is None  # moved
    book.set_result(book.get(()).request(()), *result())
    assert book.update((), Prompt.make([[3, 4], [7, 6]], [1, 1], box=[0, 0, 5, 5])).mask_input is None


def test_unchanged_prompt_is_not_decoded_again_unless_forced():
    book = PromptBook()
    p = Prompt.make([[1, 1]], [1])
    assert book.update((0,), p) is not None
    assert book.update((0,), Prompt.make([[1, 1]], [1])) is None
    assert book.update((0,), p, force=True) is not None


def test_prompts_belong_to_their_slice():
    book = PromptBook()
    book.update((0,), Prompt.make([[1, 1]], [1]))
    req1 = book.update((1,), Prompt.make(box=[4, 4, 0, 0]))
    assert req1.point_coords is None and req1.box.tolist() == [0, 0, 4, 4]  # corners sorted
    assert book.slices() == [(0,), (1,)]
    book.clear((0,))
    assert (0,) not in book and (1,) in book


def test_stale_result_is_refused():
    book = PromptBook()
    old = book.update((), Prompt.make([[1, 1]], [1]))
    book.update((), Prompt.make([[9, 9]], [1]))
    assert book.set_result(old, *result()) is None
    assert book.get(()).candidates is None


def test_removing_every_prompt_drops_the_candidates():
    book = PromptBook()
    req = book.update((), Prompt.make([[1, 1]], [1]))
    book.set_result(req, *result())
    assert book.update((), Prompt.make()) is None
    assert book.get(()).candidates is None


def test_edit_uses_mask_and_box_until_the_user_draws_a_box():
    book = PromptBook()
    logits = np.ones((4, 4), np.float32)
    req = book.start_edit((3,), 12, mask_logits=logits, box=[1, 1, 3, 3])
    assert req.mask_input.shape == (1, 4, 4) and req.box.tolist() == [1, 1, 3, 3] and req.point_coords is None
    assert book.get((3,)).edit_id == 12
    book.set_result(req, *result())
    req2 = book.update((3,), Prompt.make([[2, 2]], [0]))
    assert req2.box.tolist() == [1, 1, 3, 3]
    assert np.all(req2.mask_input == 1)  # feedback from the selected (best) candidate, index 1


def test_select_and_candidates_checks():
    book = PromptBook()
    with pytest.raises(ValueError, match="no candidates"):
        book.select((), 0)
    req = book.update((), Prompt.make([[1, 1]], [1]))
    book.set_result(req, *result())
    with pytest.raises(ValueError, match="0 .. 2"):
        book.select((), 3)
    with pytest.raises(ValueError, match="same K"):
        Candidates(*result()[:2], np.zeros((2, 4, 4)))


def test_prompt_checks():
    with pytest.raises(ValueError, match="one label per point"):
        Prompt.make([[1, 2]], [1, 0])
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        Prompt.make([[1, 2, 3]], [1])
    with pytest.raises(ValueError, match="1 \\(object\\) or 0"):
        Prompt.make([[1, 2]], [2])
    with pytest.raises(ValueError, match="box"):
        Prompt.make(box=[1, 2, 3])
    with pytest.raises(ValueError, match="NaN"):
        Prompt.make([[np.nan, 2]], [1])
    with pytest.raises(ValueError, match="label id"):
        PromptBook().start_edit((), 0, box=[0, 0, 1, 1])
    with pytest.raises(ValueError, match="mask logits or its box"):
        PromptBook().start_edit((), 1)
    with pytest.raises(TypeError, match="Prompt"):
        PromptBook().update((), [[1, 1]])


def test_mask_to_logits_follows_the_resized_padded_frame():
    # A 100 (high) x 200 (wide) image: resized to 512 x 1024 in a 1024 square, low-res 256 x 256.
    mask = np.zeros((100, 200), bool)
    mask[:, 100:] = True  # right half
    lo = mask_to_logits(mask, (512, 1024), 1024, (256, 256))
    assert lo.shape == (1, 256, 256)
    assert np.all(lo[0, :128, 128:] > 0)  # right half of the image part
    assert np.all(lo[0, :128, :128] < 0)
    assert np.all(lo[0, 128:, :] < 0)  # the padding is background
    with pytest.raises(ValueError, match="2D"):
        mask_to_logits(np.zeros(3), (1, 1), 4, (1, 1))


def test_forget_results_keeps_prompts_and_edit_but_drops_logits():
    book = PromptBook()
    req = book.update((), Prompt.make([[1, 1]], [1]))
    book.set_result(req, *result())
    book.update((), Prompt.make([[1, 1], [2, 2]], [1, 1]))
    book.start_edit((4,), 3, box=[0, 0, 2, 2])
    book.forget_results()
    obj = book.get(())
    assert obj.candidates is None and obj.feedback is None and obj.prompt.points.shape == (2, 2)
    assert book.get((4,)).edit_id == 3
    assert book.update((), obj.prompt, force=True).mask_input is None


def _discs(*areas_and_scores):
    """Candidates as nested squares of the given pixel counts (rounded to squares) with their scores."""
    masks = []
    for side, _ in areas_and_scores:
        m = np.zeros((40, 40), bool)
        m[:side, :side] = True
        masks.append(m)
    return np.stack(masks), np.array([s for _, s in areas_and_scores])


def test_compact_choice_passes_over_a_best_scored_candidate_far_larger_than_the_smallest():
    # a small nucleus (10 x 10) and the cluster with its neighbours (20 x 20, 4x the area) scored highest
    masks, scores = _discs((20, 0.55), (10, 0.40), (19, 0.60))
    assert choose_candidate(masks, scores, "score") == 2
    assert choose_candidate(masks, scores, "compact") == 1


def test_compact_choice_keeps_the_best_score_among_candidates_of_similar_size():
    masks, scores = _discs((12, 0.80), (11, 0.70), (12, 0.90))  # within 1.6x of the smallest: SAM's choice
    assert choose_candidate(masks, scores, "compact") == 2
    masks, scores = _discs((20, 0.9), (10, 0.5), (12, 0.7))  # 144 px <= 1.6 x 100 px: the better of the two small
    assert choose_candidate(masks, scores, "compact") == 2


def test_compact_choice_ignores_empty_candidates_and_rejects_unknown_choices():
    masks, scores = _discs((20, 0.9), (0, 0.3), (18, 0.5))
    assert choose_candidate(masks, scores, "compact") == 0  # the empty one is no size to compare with
    with pytest.raises(ValueError, match="choice must be one of"):
        choose_candidate(masks, scores, "smallest")
    with pytest.raises(ValueError, match="choice must be one of"):
        PromptBook(choice="smallest")


def test_prompt_book_with_the_compact_choice_selects_that_candidate_first():
    masks, scores = _discs((20, 0.55), (10, 0.40), (19, 0.60))
    low = np.zeros((3, 4, 4), np.float32)
    for choice, expected in (("score", 2), ("compact", 1)):
        book = PromptBook(choice=choice)
        req = book.update((), Prompt.make([[3, 4]], [1]))
        assert book.set_result(req, masks, scores, low).selected == expected
