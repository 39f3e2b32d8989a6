"""SamPredictor on a tiny random-weight SAM: prompt checks, output shapes, coordinates, stored embeddings, bf16.

Parity with the reference at the real vit_b size is in test_parity_vit_b.py;
here the model is small enough that every test runs in milliseconds.
"""

import warnings

import numpy as np
import pytest
import torch

from helpers import randomize_, rel_err, structured_rgb
from napari_sam.model.build import build_sam, tiny_config
from napari_sam.model.embedding import ImageEmbedding
from napari_sam.model.image import resize_longest_side
from napari_sam.model.predictor import SamPredictor, check_box, check_mask_input, check_points

SIDE = 128  # the tiny model's input size; its embedding grid is 8x8, low-res masks 32x32
H, W = 48, 64  # a non-square image: resized to 96x128, padded to 128x128


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return randomize_(build_sam(tiny_config(SIDE)), seed=seed).eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def image():
    return structured_rgb(H, W, seed=5)


@pytest.fixture(scope="module")
def embedding(model, image):
    return SamPredictor(model, device="cpu", precision="fp32").set_image(image)


@pytest.fixture()
def predictor(model, embedding):
    """A predictor with the test image set (from the stored embedding: no encoding per test)."""
    p = SamPredictor(model, device="cpu", precision="fp32")
    p.set_embedding(embedding)
    return p


def count_encoder_calls(model):
    calls = []
    handle = model.image_encoder.register_forward_hook(lambda *args: calls.append(1))
    return calls, handle


# ------------------------------------------------------------ before an image
def test_predict_before_set_image_is_refused(model):
    p = SamPredictor(model, device="cpu", precision="fp32")
    assert not p.is_image_set
    with pytest.raises(ValueError, match="set_image"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(ValueError, match="set_image"):
        p.get_image_embedding()


def test_reset_image(predictor):
    assert predictor.is_image_set
    predictor.reset_image()
    assert not predictor.is_image_set
    with pytest.raises(ValueError, match="no image"):
        predictor.predict(point_coords=[[1, 1]], point_labels=[1])


def test_not_a_model_is_refused():
    with pytest.raises(TypeError, match="SAM model"):
        SamPredictor(torch.nn.Linear(2, 2))


# ------------------------------------------------------------------- outputs
def test_embedding_records_sizes_and_rule(predictor, model, image):
    emb = predictor.embedding
    assert emb.original_size == (H, W)
    assert emb.input_size == (96, 128)
    assert emb.model_id == model.weights_id
    assert emb.preprocessing.endswith("uint8")
    assert tuple(predictor.get_image_embedding().shape) == (1, 32, 8, 8)


@pytest.mark.parametrize("multimask, n", [(True, 3), (False, 1)])
def test_output_shapes_at_the_original_size(predictor, multimask, n):
    masks, iou, low = predictor.predict(point_coords=[[20, 30]], point_labels=[1], multimask_output=multimask)
    assert masks.shape == (n, H, W) and masks.dtype == bool
    assert iou.shape == (n,) and np.isfinite(iou).all()
    assert low.shape == (n, 32, 32) and np.isfinite(low).all()


def test_masks_are_the_thresholded_logits(predictor):
    prompt = dict(point_coords=[[20, 30]], point_labels=[1])
    masks, _, _ = predictor.predict(**prompt)
    logits, _, _ = predictor.predict(**prompt, return_logits=True)
    assert logits.shape == masks.shape and logits.dtype == np.float32
    np.testing.assert_array_equal(logits > 0, masks)


def test_every_prompt_kind_runs(predictor):
    _, _, low = predictor.predict(box=[5, 5, 40, 30], multimask_output=False)
    for prompt in (
        dict(point_coords=[[20, 30], [50, 10]], point_labels=[1, 0]),
        dict(point_coords=[20, 30], point_labels=1),  # one point without the list around it
        dict(point_coords=[[20, 30]], point_labels=[-1]),
        dict(box=np.array([5, 5, 40, 30])),
        dict(point_coords=[[20, 30]], point_labels=[1], box=[5, 5, 40, 30]),
        dict(mask_input=low),  # refinement from an earlier low-res output alone
        dict(point_coords=[[20, 30]], point_labels=[1], mask_input=low[0]),  # (h, w) is accepted too
        dict(point_coords=torch.tensor([[20.0, 30.0]]), point_labels=torch.tensor([1])),
    ):
        masks, iou, _ = predictor.predict(**prompt)
        assert masks.shape == (3, H, W) and iou.shape == (3,)


def test_prompts_change_the_result(predictor):
    # The decoder is not ignoring its input: different prompts, different logits.
    a = predictor.predict(point_coords=[[5, 5]], point_labels=[1])[2]
    b = predictor.predict(point_coords=[[60, 40]], point_labels=[1])[2]
    c = predictor.predict(point_coords=[[5, 5]], point_labels=[0])[2]
    assert not np.allclose(a, b) and not np.allclose(a, c)


def test_box_corners_are_sorted_and_clipped(predictor):
    ref = predictor.predict(box=[5, 6, 40, 30])[2]
    np.testing.assert_array_equal(predictor.predict(box=[40, 30, 5, 6])[2], ref)
    np.testing.assert_array_equal(predictor.predict(box=[5, 30, 40, 6])[2], ref)
    np.testing.assert_array_equal(check_box([40, 30, 5, 6], (H, W)), [5, 6, 40, 30])
    np.testing.assert_array_equal(check_box([-10, -3, 100, 70], (H, W)), [0, 0, W, H])
    clipped = predictor.predict(box=[-10, -3, 100, 70])[2]
    np.testing.assert_array_equal(clipped, predictor.predict(box=[0, 0, W, H])[2])


def test_points_on_the_image_border_are_accepted(predictor):
    masks, _, _ = predictor.predict(point_coords=[[0, 0], [W, H]], point_labels=[1, 1])
    assert masks.shape == (3, H, W)


# ------------------------------------------------------------- bad prompts
@pytest.mark.parametrize(
    "prompt, error, word",
    [
        (dict(), ValueError, "nothing to segment"),
        (dict(point_coords=[[np.nan, 3]], point_labels=[1]), ValueError, "NaN"),
        (dict(point_coords=[[np.inf, 3]], point_labels=[1]), ValueError, "infinite"),
        (dict(point_coords=[[3, 3]], point_labels=[np.nan]), ValueError, "NaN"),
        (dict(point_coords=[[1, 2], [3, 4]], point_labels=[1]), ValueError, "label"),
        (dict(point_coords=[[1, 2]], point_labels=[1, 0]), ValueError, "label"),
        (dict(point_labels=[1]), ValueError, "without point_coords"),
        (dict(point_coords=[[1, 2]]), ValueError, "without point_labels"),
        (dict(point_coords=[[1, 2]], point_labels=[2]), ValueError, "point_labels"),
        (dict(point_coords=[[1, 2]], point_labels=[0.5]), ValueError, "point_labels"),
        (dict(point_coords=[[1, 2, 3]], point_labels=[1]), ValueError, r"\(N, 2\)"),
        (dict(point_coords=np.zeros((0, 2)), point_labels=[]), ValueError, r"\(N, 2\)"),
        (dict(point_coords=[["a", "b"]], point_labels=[1]), TypeError, "point_coords"),
        (dict(point_coords=[[W + 1, 3]], point_labels=[1]), ValueError, "outside"),
        (dict(point_coords=[[3, -1]], point_labels=[1]), ValueError, "outside"),
        (dict(point_coords=[[3, 3], [3, H + 0.5]], point_labels=[1, 1]), ValueError, "outside"),
        (dict(box=[1, 2, 3]), ValueError, "4 numbers"),
        (dict(box=[1, 2, 3, 4, 5]), ValueError, "4 numbers"),
        (dict(box=[1, np.nan, 3, 4]), ValueError, "NaN"),
        (dict(box=[W + 1, 0, W + 10, 10]), ValueError, "outside"),
        (dict(box=[-20, -20, -1, -1]), ValueError, "outside"),
        (dict(box=[0, H + 1, 10, H + 5]), ValueError, "outside"),
        (dict(mask_input=np.zeros((1, 64, 64))), ValueError, "mask_input"),
        (dict(mask_input=np.zeros((3, 32, 32))), ValueError, "mask_input"),
        (dict(mask_input=np.full((1, 32, 32), np.nan)), ValueError, "NaN"),
    ],
)
def test_bad_prompts_are_refused_with_a_message(predictor, prompt, error, word):
    with pytest.raises(error, match=word):
        predictor.predict(**prompt)


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int32])
def test_a_binary_mask_is_not_taken_for_logits(predictor, dtype):
    # 0/1 or 0/255 read as logits: "unsure" and "certain" everywhere, without a word.
    mask = np.zeros((1, 32, 32), dtype)
    mask[0, 8:20, 8:20] = 1
    with pytest.raises(TypeError, match=r"mask_to_logits"):
        predictor.predict(point_coords=[[20, 30]], point_labels=[1], mask_input=mask)
    with pytest.raises(TypeError, match=r"mask_to_logits"):
        predictor.predict(mask_input=torch.from_numpy(mask))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_mask_input_may_be_a_torch_tensor_of_any_float_dtype(predictor, dtype):
    _, _, low = predictor.predict(point_coords=[[20, 30]], point_labels=[1], multimask_output=False)
    logits = torch.from_numpy(low).to(dtype)
    expected = predictor.predict(point_coords=[[20, 30]], point_labels=[1], mask_input=logits.float().numpy())
    got = predictor.predict(point_coords=[[20, 30]], point_labels=[1], mask_input=logits)
    np.testing.assert_array_equal(got[2], expected[2])


@pytest.mark.parametrize(
    "prompt",
    [
        dict(mask_input=np.zeros((1, 32, 32), complex)),
        dict(mask_input=torch.zeros(1, 32, 32, dtype=torch.complex64)),
        dict(point_coords=np.array([[20 + 1j, 30]]), point_labels=[1]),
        dict(point_coords=[[20, 30]], point_labels=np.array([1 + 0j])),
        dict(box=np.array([5, 5, 40, 30], complex)),
    ],
)
def test_complex_prompts_are_refused(predictor, prompt):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the imaginary part used to be dropped with only numpy's warning
        with pytest.raises(TypeError, match="complex"):
            predictor.predict(**prompt)


@pytest.mark.parametrize("value", ["no", 0, 1, None, np.array([True])])
def test_multimask_output_must_be_a_bool(predictor, value):
    with pytest.raises(TypeError, match="multimask_output"):
        predictor.predict(point_coords=[[20, 30]], point_labels=[1], multimask_output=value)
    with pytest.raises(TypeError, match="return_logits"):
        predictor.predict(point_coords=[[20, 30]], point_labels=[1], return_logits=value)
    masks, _, _ = predictor.predict(point_coords=[[20, 30]], point_labels=[1], multimask_output=np.bool_(False))
    assert masks.shape[0] == 1


@pytest.mark.parametrize("box", [[10, 5, 10, 30], [5, 12, 40, 12], [W, 5, W + 10, 30], [5, -8, 40, 0]])
def test_a_box_without_area_is_refused(predictor, box):
    with pytest.raises(ValueError, match="no area"):
        predictor.predict(box=box)
    predictor.predict(box=[10, 5, 11, 6])  # one pixel (x1 = last column + 1) is a box


def test_prompt_checks_directly():
    coords, labels = check_points([[1, 2], [3, 4]], [1, 0], (10, 10))
    assert coords.shape == (2, 2) and labels.dtype == np.int64
    assert check_mask_input(np.zeros((32, 32)), (32, 32)).shape == (1, 32, 32)
    with pytest.raises(ValueError, match="outside"):
        check_points([[11, 2]], [1], (10, 10))  # x is checked against the width
    check_points([[2, 11]], [1], (20, 12))  # (x, y) order: y=11 fits a height of 20


# --------------------------------------------------------------- coordinates
def test_to_input_coords_scales_x_by_width_and_y_by_height(predictor):
    emb = predictor.embedding  # 48x64 -> 96x128: both axes x2
    np.testing.assert_allclose(predictor.to_input_coords(np.array([[64, 48], [10, 5]]), emb), [[128, 96], [20, 10]])
    tall = ImageEmbedding(emb.features, (100, 30), (128, 38), emb.model_id, emb.preprocessing)
    np.testing.assert_allclose(predictor.to_input_coords([[30, 100]], tall), [[38, 128]])


def test_same_point_on_an_image_and_its_resized_copy_gives_the_same_logits(model, image):
    # The 48x64 image is resized to 96x128 for the encoder. Handing in that resized copy itself
    # gives the identical encoder input; the same spot, given in each image's own pixels,
    # must then reach the decoder at the same place.
    big = resize_longest_side(image, SIDE)
    assert big.shape[:2] == (96, 128)
    small_p = SamPredictor(model, device="cpu", precision="fp32")
    big_p = SamPredictor(model, device="cpu", precision="fp32")
    small_p.set_image(image)
    big_p.set_image(big)
    torch.testing.assert_close(small_p.get_image_embedding(), big_p.get_image_embedding())

    for prompt_small, prompt_big in (
        (dict(point_coords=[[12.5, 30]], point_labels=[1]), dict(point_coords=[[25, 60]], point_labels=[1])),
        (dict(box=[4, 6, 40, 30]), dict(box=[8, 12, 80, 60])),
    ):
        masks_s, iou_s, low_s = small_p.predict(**prompt_small)
        masks_b, iou_b, low_b = big_p.predict(**prompt_big)
        np.testing.assert_allclose(low_s, low_b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(iou_s, iou_b, rtol=1e-5, atol=1e-5)
        assert masks_s.shape == (3, 48, 64) and masks_b.shape == (3, 96, 128)
        # The big masks are (nearly) the small ones at twice the size.
        assert (masks_b[:, ::2, ::2] == masks_s).mean() > 0.97
    # A point at another place gives other logits: the comparison above can fail.
    other = small_p.predict(point_coords=[[25, 30]], point_labels=[1])[2]
    assert not np.allclose(other, big_p.predict(point_coords=[[25, 60]], point_labels=[1])[2], atol=1e-3)


def test_decoder_receives_points_in_encoder_input_pixels(predictor, monkeypatch):
    seen = {}
    encoder = predictor.model.prompt_encoder
    original = encoder.forward

    def spy(points=None, boxes=None, masks=None):
        seen["points"] = None if points is None else points[0].clone()
        seen["boxes"] = None if boxes is None else boxes.clone()
        return original(points=points, boxes=boxes, masks=masks)

    monkeypatch.setattr(encoder, "forward", spy)
    predictor.predict(point_coords=[[10, 20]], point_labels=[1], box=[1, 2, 30, 40])
    torch.testing.assert_close(seen["points"], torch.tensor([[[20.0, 40.0]]]))
    torch.testing.assert_close(seen["boxes"], torch.tensor([[2.0, 4.0, 60.0, 80.0]]))


# ---------------------------------------------------------- stored embeddings
def test_set_embedding_gives_identical_results_without_encoding(model, image):
    first = SamPredictor(model, device="cpu", precision="fp32")
    emb = first.set_image(image)
    expected = first.predict(point_coords=[[20, 30]], point_labels=[1])

    calls, handle = count_encoder_calls(model)
    try:
        second = SamPredictor(model, device="cpu", precision="fp32")
        second.set_embedding(emb)
        got = second.predict(point_coords=[[20, 30]], point_labels=[1])
        assert calls == []  # decoding from the stored embedding never runs the encoder
        second.set_image(image)
        assert calls == [1]  # ... while set_image does (the counter works)
    finally:
        handle.remove()
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_set_embedding_survives_a_copy_to_float16_and_back(model, image, predictor):
    # A cache may store embeddings compactly; they come back as float32 on the predictor's device.
    emb = predictor.embedding
    stored = emb.to(dtype=torch.float16)
    fresh = SamPredictor(model, device="cpu", precision="fp32")
    fresh.set_embedding(stored)
    assert fresh.get_image_embedding().dtype == torch.float32
    assert rel_err(fresh.get_image_embedding(), emb.features) < 1e-3


def test_set_embedding_from_another_model_is_refused(predictor, image):
    other = SamPredictor(tiny_model(seed=1), device="cpu", precision="fp32")
    emb = other.set_image(image)
    with pytest.raises(ValueError, match="model"):
        predictor.set_embedding(emb)


def test_set_embedding_with_wrong_feature_shape_is_refused(predictor, model):
    emb = predictor.embedding
    wrong = ImageEmbedding(torch.zeros(1, 16, 8, 8), emb.original_size, emb.input_size, model.weights_id, "v1:uint8")
    with pytest.raises(ValueError, match="shape"):
        predictor.set_embedding(wrong)
    wrong_grid = ImageEmbedding(torch.zeros(1, 32, 16, 16), emb.original_size, emb.input_size, model.weights_id, "x")
    with pytest.raises(ValueError, match="shape"):
        predictor.set_embedding(wrong_grid)


@pytest.mark.parametrize("hw", [(2, 5000), (3000, 2)])
def test_thin_strips_give_masks_of_their_own_shape(model, hw):
    # The short side would be resized to 0 pixels (Pillow: "height and width must be > 0").
    p = SamPredictor(model, device="cpu", precision="fp32")
    strip = np.random.default_rng(0).integers(0, 4000, hw, dtype=np.uint16)
    emb = p.set_image(strip)
    assert min(emb.input_size) == 1
    H, W = hw
    masks, scores, low = p.predict(point_coords=[[W // 2, H // 2]], point_labels=[1])
    assert masks.shape == (3, H, W) and masks.dtype == bool and np.isfinite(scores).all()
    masks, _, _ = p.predict(box=[0, 0, W, H], multimask_output=False)
    assert masks.shape == (1, H, W)


def test_set_embedding_with_sizes_that_do_not_fit_together_is_refused(predictor, model):
    # An image of 956 x 856 is resized to 128 x 115 by this model, not to the 96 x 128 kept for 48 x 64.
    emb = predictor.embedding
    wrong = ImageEmbedding(emb.features, (956, 856), emb.input_size, model.weights_id, emb.preprocessing)
    with pytest.raises(ValueError, match=r"956 x 856.*96 x 128"):
        predictor.set_embedding(wrong)


def test_an_encoder_that_gives_nan_is_refused_before_its_embedding_is_used(image):
    broken = tiny_model()
    with torch.no_grad():
        broken.image_encoder.neck[0].weight.fill_(float("nan"))
    p = SamPredictor(broken, device="cpu", precision="fp32")
    with pytest.raises(ValueError, match="NaN or infinite"):
        p.set_image(image)
    assert not p.is_image_set


def test_set_embedding_refuses_features_that_are_not_finite(predictor, model):
    emb = predictor.embedding
    features = emb.features.clone()
    features[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        predictor.set_embedding(ImageEmbedding(features, emb.original_size, emb.input_size, model.weights_id, "r"))
    assert predictor.embedding is emb  # the previous image stays


def test_set_embedding_needs_an_image_embedding(predictor):
    with pytest.raises(TypeError, match="ImageEmbedding"):
        predictor.set_embedding(predictor.get_image_embedding())


@pytest.mark.parametrize(
    "features, original, resized, word",
    [
        (torch.zeros(32, 8, 8), (4, 4), (4, 4), "features"),
        (torch.zeros(2, 32, 8, 8), (4, 4), (4, 4), "features"),
        (np.zeros((1, 32, 8, 8)), (4, 4), (4, 4), "features"),
        (torch.zeros(1, 32, 8, 8), (0, 4), (4, 4), "original_size"),
        (torch.zeros(1, 32, 8, 8), (4, 4), (4,), "input_size"),
    ],
)
def test_image_embedding_checks_itself(features, original, resized, word):
    with pytest.raises(ValueError, match=word):
        ImageEmbedding(features, original, resized, "m", "r")


def test_embedding_identity_depends_on_the_preprocessing_rule(model):
    p = SamPredictor(model, device="cpu", precision="fp32")
    u16 = (np.arange(H * W).reshape(H, W) * 7).astype(np.uint16)
    a = p.set_image(u16).preprocessing
    b = p.set_image(u16, intensity_range=(0, 10_000)).preprocessing
    assert a != b


# ------------------------------------------------------------------ precision
def test_bf16_predictor_keeps_the_callers_model_float32(image):
    model = tiny_model(seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fp32 = SamPredictor(model, device="cpu", precision="fp32")
    bf16 = SamPredictor(model, device="cpu", precision="bf16")
    assert bf16.encoder_dtype == torch.bfloat16
    e32 = fp32.set_image(image).features
    e16 = bf16.set_image(image).features
    # The caller's model is untouched: still float32, same values.
    for name, value in model.state_dict().items():
        assert value.dtype == before[name].dtype
        torch.testing.assert_close(value, before[name], rtol=0, atol=0)
    assert e16.dtype == torch.float32  # handed out as float32 whatever the encoder ran in
    err = rel_err(e16, e32)
    assert 0 < err < 0.05  # bf16 really ran (not bit-identical), and stays close
    # Decoding stays float32 and gives close masks.
    m32, _, l32 = fp32.predict(point_coords=[[20, 30]], point_labels=[1])
    m16, _, l16 = bf16.predict(point_coords=[[20, 30]], point_labels=[1])
    assert rel_err(l16, l32) < 0.1
    assert (m16 == m32).mean() > 0.9


def test_bad_precision_is_refused(model):
    with pytest.raises(ValueError, match="precision"):
        SamPredictor(model, device="cpu", precision="fp16")


# ------------------------------------------------- twin predictors, preparing
def test_twin_shares_the_weight_copies_but_not_the_image(image):
    model = tiny_model(seed=3)
    first = SamPredictor(model, device="cpu", precision="bf16")
    twin = first.twin()
    assert twin._encoder is first._encoder and twin._decoder is first._decoder  # no second bf16 copy
    assert twin.encoder_dtype == first.encoder_dtype == torch.bfloat16
    emb = first.set_image(image)
    assert not twin.is_image_set  # each keeps its own current image
    twin.set_embedding(emb)
    other = structured_rgb(H, W, seed=9)
    first.set_image(other)  # the twin still decodes the first image
    a = twin.predict(point_coords=[[20, 30]], point_labels=[1])
    fresh = SamPredictor(model, device="cpu", precision="bf16")
    fresh.set_embedding(emb)
    b = fresh.predict(point_coords=[[20, 30]], point_labels=[1])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_prepare_changes_nothing_but_when_the_work_is_done(predictor, embedding):
    prompt = dict(point_coords=[[20, 30], [40, 10]], point_labels=[1, 0])
    plain = SamPredictor(predictor.model, device="cpu", precision="fp32")
    plain.set_embedding(embedding)
    expected = plain.predict(**prompt)
    predictor.prepare()
    assert predictor._prepared is not None
    for x, y in zip(predictor.predict(**prompt), expected):
        np.testing.assert_array_equal(x, y)


def test_prepare_needs_an_image(model):
    with pytest.raises(ValueError, match="no image is set"):
        SamPredictor(model, device="cpu", precision="fp32").prepare()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_switching_images_never_reuses_the_previous_images_decoder_inputs(model, image, precision):
    """Per-image work kept between clicks (converted embedding, prepared first block) follows set_embedding."""
    p = SamPredictor(model, device="cpu", precision=precision)
    emb_a = p.set_image(image)
    emb_b = p.set_image(structured_rgb(H, W, seed=11))
    prompt = dict(point_coords=[[20, 30]], point_labels=[1])
    for emb in (emb_a, emb_b, emb_a):
        p.set_embedding(emb)
        p.prepare()
        got = p.predict(**prompt)
        fresh = SamPredictor(model, device="cpu", precision=precision)
        fresh.set_embedding(emb)
        for x, y in zip(got, fresh.predict(**prompt)):
            np.testing.assert_array_equal(x, y)
    _, _, low_a = p.predict(**prompt)
    p.set_embedding(emb_b)
    _, _, low_b = p.predict(**prompt)
    assert not np.array_equal(low_a, low_b)  # the two images really decode differently


@pytest.mark.parametrize("original", [(48, 64), (64, 48), (37, 128), (128, 128), (20, 21)])
def test_upscaling_only_the_unpadded_logits_gives_identical_masks(model, original):
    """The padding rows/columns of the low-res logits are skipped: same numbers as upsampling them all."""
    p = SamPredictor(model, device="cpu", precision="fp32")
    H, W = original
    (h, w) = resize_longest_side(np.zeros((H, W, 3), np.uint8), SIDE).shape[:2]
    emb = ImageEmbedding(torch.zeros(1, 32, 8, 8), (H, W), (h, w), model.weights_id, "test")
    low = torch.randn(2, 3, SIDE // 4, SIDE // 4, generator=torch.Generator().manual_seed(H * W))
    got = p.upscale_logits(low, emb)
    full = torch.nn.functional.interpolate(low.reshape(6, 1, SIDE // 4, SIDE // 4), (SIDE, SIDE), mode="bilinear", align_corners=False)
    full = full[..., :h, :w]
    if (h, w) != (H, W):
        full = torch.nn.functional.interpolate(full, (H, W), mode="bilinear", align_corners=False)
    assert got.shape == (2, 3, H, W)
    torch.testing.assert_close(got, full.reshape(2, 3, H, W), rtol=0, atol=0)
