"""SamPredictor: embed an image once, then turn prompts into masks in milliseconds.

Usage, as users of Segment Anything know it::

    predictor = SamPredictor(load_model("vit_b"))
    predictor.set_image(image)                       # the heavy part, once per image
    masks, scores, logits = predictor.predict(point_coords=[[120, 80]], point_labels=[1])

Coordinates are (x, y) pixels of the original image. ``masks`` are the three
candidates (part, object, whole) for an ambiguous prompt, or one mask with
``multimask_output=False``.
"""

import copy

import numpy as np
import torch

from .attention_choice import float32_global_attention_pays, use_float32_global_attention
from .device import cpu_has_fast_bf16, pick_device
from .embedding import ImageEmbedding
from .foreground import gate_of
from .image import encoder_input, resize_longest_side, resized_shape, to_uint8_rgb
from .int8 import int8_copy
from .postprocess import masks_at_original_size, size_text, upscale_logits
from .precision_choice import choose_precision, encoder_kind
from .prompt_checks import check_box, check_flag, check_mask_input, check_points


#: Image-token elements (prompts x tokens x channels) one decoder call of predict_batch works on.
DECODE_BATCH_ELEMENTS = 2**21


class SamPredictor:
    def __init__(self, model, device=None, precision: str = "auto") -> None:
        for part in ("image_encoder", "prompt_encoder", "mask_decoder"):
            if not hasattr(model, part):
                raise TypeError(f"expected a SAM model (from build_sam or load_model), got {type(model).__name__}")
        self.device = pick_device(device) if device is not None else model.device
        self.model = model.to(self.device).eval()
        self.precision = precision
        choice = choose_precision(precision, self.device, encoder_kind(self.model))
        #: What the image encoder computes in ("fp32", "bf16", "int8") and, in one line, why.
        self.embedding_precision, self.precision_reason = choice.precision, choice.reason
        # int8 computes its linear layers in integers, everything else in float32.
        self.encoder_dtype = torch.bfloat16 if choice.precision == "bf16" else torch.float32
        if choice.precision == "int8":
            self._encoder = int8_copy(self.model.image_encoder)
        else:
            self._encoder = self._low_precision_copy(self.model.image_encoder, self.encoder_dtype)
        if choice.precision == "bf16" and self.device.type == "cpu" and encoder_kind(self.model) == "ImageEncoderViT":
            # Without AMX the fused bf16 kernel is slower than float32 on the global blocks (measured once);
            # where bf16 is only emulated, float32 is faster for sure, and timing bf16 there would take long.
            if not cpu_has_fast_bf16():
                use_float32_global_attention(self._encoder)
                self.precision_reason += "; global attention in float32 (bf16 is emulated on this CPU)"
            elif float32_global_attention_pays():
                use_float32_global_attention(self._encoder)
                self.precision_reason += "; global attention in float32 (faster on this CPU, measured)"
        # The mask decoder follows the encoder's precision in bf16 (1.6x faster
        # per click on an AVX512-BF16 CPU) and stays float32 under int8 (its
        # attention reads the weights folded into other products, and a click
        # costs tens of ms). The prompt encoder, whose Fourier features of click
        # positions lose pixels in bf16, and every LayerNorm's statistics stay float32.
        self._decoder = self._low_precision_copy(self.model.mask_decoder, self.encoder_dtype)
        #: Hold it while the user waits (a click): passes of this encoder in other threads pause meanwhile.
        self.foreground = gate_of(self._encoder)
        self._embedding: ImageEmbedding | None = None
        self._dense_pe: torch.Tensor | None = None
        self._prepared: tuple[ImageEmbedding, dict] | None = None
        self._decoder_inputs: tuple[ImageEmbedding, torch.Tensor, torch.Tensor] | None = None

    def twin(self) -> "SamPredictor":
        """Another predictor on the same model and the same weight copies, with its own current image.

        For two threads, one embedding the next image while the other decodes
        clicks on the current one: each keeps its own embedding, yet the
        low-precision copies of the encoder and decoder exist once, and both
        decode with the same precision.
        """
        other = copy.copy(self)
        other.reset_image()
        return other

    # ----------------------------------------------------------------- embedding
    @staticmethod
    def _low_precision_copy(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
        if dtype == torch.float32:
            return module
        # A copy, so the caller's model keeps its float32 weights.
        return copy.deepcopy(module).to(dtype)

    @torch.inference_mode()
    def set_image(self, image, intensity_range: tuple[float, float] | None = None) -> ImageEmbedding:
        """Embed a 2D image (H, W), (H, W, 1|3|4) of any numeric dtype; see napari_sam.model.image."""
        try:
            prepared = to_uint8_rgb(image, intensity_range)
            resized = resize_longest_side(prepared.rgb, self.model.image_size)
        except MemoryError as err:
            raise MemoryError(_preparing_needs(image, err)) from None
        x = encoder_input(
            resized, self.model.pixel_mean, self.model.pixel_std, self.model.image_size, self.device, self.encoder_dtype
        )
        features = self._encoder(x).float()
        embedding = ImageEmbedding(
            features=features,
            original_size=prepared.rgb.shape[:2],
            input_size=resized.shape[:2],
            model_id=self.model.weights_id,
            preprocessing=prepared.rule,
            precision=self.embedding_precision,
        )
        embedding.check_finite("the image encoder's output for this image")
        self._prepared = self._decoder_inputs = None
        self._embedding = embedding
        return self._embedding

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Decode from a stored embedding (e.g. from a cache) without encoding again.

        Any precision is accepted: the caller's key decides which one it wants.
        """
        if not isinstance(embedding, ImageEmbedding):
            raise TypeError(f"expected an ImageEmbedding, got {type(embedding).__name__}")
        if embedding.model_id != self.model.weights_id:
            raise ValueError(
                f"this embedding was made by model {embedding.model_id}, not by this predictor's model "
                f"{self.model.weights_id}; embed the image again with this model"
            )
        expected = (self.model.prompt_encoder.embed_dim, *self.model.prompt_encoder.image_embedding_size)
        if tuple(embedding.features.shape[1:]) != expected:
            raise ValueError(f"embedding features have shape {tuple(embedding.features.shape)}, expected (1, {expected})")
        (H, W), (h, w) = embedding.original_size, embedding.input_size
        if (h, w) != resized_shape(H, W, self.model.image_size):
            # Prompts and masks would be placed with the wrong scale.
            raise ValueError(
                f"the embedding says an image of {H} x {W} pixels was resized to {h} x {w}, but this model resizes "
                f"it to {' x '.join(map(str, resized_shape(H, W, self.model.image_size)))}: the embedding is "
                "damaged or not from this image; embed the image again"
            )
        embedding.check_finite()
        self._prepared = self._decoder_inputs = None
        self._embedding = embedding.to(self.device, torch.float32)

    def reset_image(self) -> None:
        self._embedding = None
        self._prepared = self._decoder_inputs = None

    @property
    def is_image_set(self) -> bool:
        return self._embedding is not None

    @property
    def embedding(self) -> ImageEmbedding:
        return self._require_embedding()

    def get_image_embedding(self) -> torch.Tensor:
        """The (1, C, h, w) embedding of the current image."""
        return self._require_embedding().features

    def _require_embedding(self) -> ImageEmbedding:
        if self._embedding is None:
            raise ValueError("no image is set: call set_image(image) (or set_embedding) before predict")
        return self._embedding

    # ------------------------------------------------------------------- prompts
    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ):
        """Masks for one prompt; returns numpy (masks [C,H,W] bool, iou [C], low-res logits [C,h,w]).

        point_coords (N, 2) as (x, y) pixels, point_labels (N,) with 1 = object,
        0 = background; box (4,) as x0, y0, x1, y1; mask_input (1, h, w) low-res
        logits of an earlier prediction (SAM's interactive refinement).
        """
        multimask_output = check_flag(multimask_output, "multimask_output")
        return_logits = check_flag(return_logits, "return_logits")
        emb = self._require_embedding()
        prompts = self._prepare_prompts(emb, point_coords, point_labels, box, mask_input)
        low_res, iou = self._decode(emb, *prompts, multimask_output=multimask_output)
        with torch.inference_mode():
            masks = masks_at_original_size(
                low_res, self.model.image_size, emb.input_size, emb.original_size, logits=return_logits
            )
        return masks[0].numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    def predict_batch(self, point_coords, point_labels, multimask_output: bool = True, iou_floor: float | None = None):
        """Low-res logits and IoU predictions for B point prompts at once, on the current image.

        point_coords (B, N, 2) as (x, y) pixels of the original image,
        point_labels (B, N). Returns torch tensors on the CPU: low-res logits
        (B, C, 4h, 4w) and IoU predictions (B, C). The decoder's image side is
        prepared once for the whole batch (the same numbers as B ``predict``
        calls); the automatic mask generator decodes its point grid this way.
        With ``iou_floor`` a third result gives the indices of the prompts with a
        candidate above it, and the logits are those prompts' only (the others'
        masks are never made).
        """
        multimask_output = check_flag(multimask_output, "multimask_output")
        emb = self._require_embedding()
        coords = np.asarray(point_coords, dtype=np.float64)
        labels = np.asarray(point_labels)
        if coords.ndim != 3 or coords.shape[-1] != 2 or coords.shape[0] < 1 or coords.shape[1] < 1:
            raise ValueError(f"point_coords must be (prompts, points, 2) with (x, y) pixels, got shape {coords.shape}")
        if labels.shape != coords.shape[:2]:
            raise ValueError(f"point_labels must be (prompts, points) = {coords.shape[:2]}, got shape {labels.shape}")
        check_points(coords.reshape(-1, 2), labels.reshape(-1), emb.original_size)  # as predict() checks them
        points = torch.as_tensor(self.to_input_coords(coords, emb), dtype=torch.float32, device=self.device)
        labels = torch.as_tensor(labels, dtype=torch.int64, device=self.device)
        # A few prompts at a time: each prompt's image tokens pass through the decoder, and
        # beyond a few MB of them per call the CPU's caches overflow. vit_b at 1024 px, fp32,
        # 2-core CPU: 21 ms per prompt one or two at a time, 41 ms by 8, 44 ms by 32.
        per_call = max(1, DECODE_BATCH_ELEMENTS // emb.features[0].numel())
        parts = [self._decode(emb, points[i : i + per_call], labels[i : i + per_call], None, None,
                              multimask_output=multimask_output, iou_floor=iou_floor)
                 for i in range(0, len(points), per_call)]
        low_res, iou = torch.cat([p[0] for p in parts]).cpu(), torch.cat([p[1] for p in parts]).cpu()
        if iou_floor is None:
            return low_res, iou
        rows = torch.cat([p[2].cpu() + i * per_call for i, p in enumerate(parts)])
        return low_res, iou, rows

    def predict_objects(self, point_coords, point_labels, mask_input=None, multimask_output: bool = True):
        """``predict`` for B objects at once, each with its own N points and, optionally, mask prompt.

        point_coords (B, N, 2) as (x, y) pixels, point_labels (B, N),
        mask_input (B, 1, h, w) low-res logits or None. Returns numpy (masks
        [B, C, H, W] bool, iou [B, C], low-res logits [B, C, h, w]): the numbers
        of B ``predict`` calls in a few decoder calls (the simulated annotator
        clicks every object of an image this way).
        """
        multimask_output = check_flag(multimask_output, "multimask_output")
        emb = self._require_embedding()
        coords, labels = np.asarray(point_coords, dtype=np.float64), np.asarray(point_labels)
        if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
            raise ValueError(f"point_coords must be (objects, points, 2) and point_labels (objects, points), got "
                             f"shapes {coords.shape} and {labels.shape}")
        check_points(coords.reshape(-1, 2), labels.reshape(-1), emb.original_size)
        points = torch.as_tensor(self.to_input_coords(coords, emb), dtype=torch.float32, device=self.device)
        labels = torch.as_tensor(labels, dtype=torch.int64, device=self.device)
        masks = None
        if mask_input is not None:
            masks = np.asarray(mask_input, dtype=np.float32)
            if masks.shape != (len(coords), 1, *self.model.prompt_encoder.mask_input_size):
                raise ValueError(f"mask_input must be (objects, 1, {', '.join(map(str, self.model.prompt_encoder.mask_input_size))}), "
                                 f"got shape {masks.shape}")
            masks = torch.as_tensor(masks, device=self.device)
        per_call = max(1, DECODE_BATCH_ELEMENTS // emb.features[0].numel())
        parts = [self._decode(emb, points[i : i + per_call], labels[i : i + per_call], None,
                              None if masks is None else masks[i : i + per_call], multimask_output=multimask_output)
                 for i in range(0, len(points), per_call)]
        low_res, iou = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        with torch.inference_mode():
            shown = masks_at_original_size(low_res, self.model.image_size, emb.input_size, emb.original_size)
        return shown.numpy(), iou.cpu().numpy(), low_res.cpu().numpy()

    def _prepare_prompts(self, emb, point_coords, point_labels, box, mask_input):
        H, W = emb.original_size
        points = labels = boxes = masks = None
        if point_coords is not None or point_labels is not None:
            points, labels = check_points(point_coords, point_labels, (H, W))
            points = self.to_input_coords(points, emb)
            points = torch.as_tensor(points, dtype=torch.float32, device=self.device)[None]
            labels = torch.as_tensor(labels, dtype=torch.int64, device=self.device)[None]
        if box is not None:
            boxes = check_box(box, (H, W))
            boxes = self.to_input_coords(boxes.reshape(2, 2), emb).reshape(1, 4)
            boxes = torch.as_tensor(boxes, dtype=torch.float32, device=self.device)
        if mask_input is not None:
            masks = check_mask_input(mask_input, self.model.prompt_encoder.mask_input_size)
            masks = torch.as_tensor(masks, dtype=torch.float32, device=self.device)[None]
        if points is None and boxes is None and masks is None:
            raise ValueError("nothing to segment: give at least one point, a box or a mask_input")
        return points, labels, boxes, masks

    def to_input_coords(self, coords: np.ndarray, emb: ImageEmbedding) -> np.ndarray:
        """(x, y) pixels of the original image -> pixels of the resized encoder input."""
        (H, W), (h, w) = emb.original_size, emb.input_size
        out = np.array(coords, dtype=np.float64, copy=True)
        out[..., 0] *= w / W
        out[..., 1] *= h / H
        return out

    def _image_pe(self) -> torch.Tensor:
        # Fixed for a model: computed once instead of at every click.
        if self._dense_pe is None:
            self._dense_pe = self.model.prompt_encoder.get_dense_pe()
        return self._dense_pe

    @torch.inference_mode()
    def prepare(self) -> None:
        """Do the decoder's prompt-independent work for the current image now.

        Otherwise the first prompt on an image pays for it (a few ms for
        vit_b on the CPU); an interactive caller can do it as soon as the
        image is set, before the user clicks. The result is the same.
        """
        emb = self._require_embedding()
        _, dense = self.model.prompt_encoder(points=None, boxes=None, masks=None)
        self._prepared_image(emb, dense[:1])

    def _image_inputs(self, emb: ImageEmbedding) -> tuple[torch.Tensor, torch.Tensor]:
        """The embedding and the positional encoding in the decoder's precision.

        Converted once per image: in bf16, converting them at every click took
        about 1 ms of a vit_b click on the CPU.
        """
        if self._decoder_inputs is None or self._decoder_inputs[0] is not emb:
            dtype = self._decoder.iou_token.weight.dtype
            self._decoder_inputs = (emb, emb.features.to(dtype), self._image_pe().to(dtype))
        return self._decoder_inputs[1], self._decoder_inputs[2]

    def _prepared_image(self, emb: ImageEmbedding, dense: torch.Tensor) -> dict:
        """The decoder's prompt-independent work for this embedding (no mask prompt)."""
        if self._prepared is None or self._prepared[0] is not emb:
            features, image_pe = self._image_inputs(emb)
            self._prepared = (emb, self._decoder.prepare_image(features, image_pe, dense))
        return self._prepared[1]

    @torch.inference_mode()
    def _decode(self, emb, points, labels, boxes, masks, multimask_output: bool, iou_floor: float | None = None):
        model = self.model
        sparse, dense = model.prompt_encoder(
            points=(points, labels) if points is not None else None, boxes=boxes, masks=masks
        )
        # Without a mask prompt the dense input is a constant, so the image
        # side of the decoder's first block can be reused across clicks.
        prepared = self._prepared_image(emb, dense[:1]) if masks is None else None
        features, image_pe = self._image_inputs(emb)
        out = self._decoder(
            image_embeddings=features,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            prepared=prepared,
            **({} if iou_floor is None else {"iou_floor": iou_floor}),
        )
        if iou_floor is not None:
            return out[0].float(), out[1].float(), out[2]
        return out[0].float(), out[1].float()

    @torch.inference_mode()
    def upscale_logits(self, low_res: torch.Tensor, emb: ImageEmbedding) -> torch.Tensor:
        """Low-res logits (B, C, 4h, 4w) -> logits at the original image size (B, C, H, W), whole planes.

        As SAM does: upsample to the padded encoder input, drop the padding,
        then resize to the original size. ``predict`` computes the same numbers
        in bands (:func:`napari_sam.model.postprocess.masks_at_original_size`).
        """
        return upscale_logits(low_res, self.model.image_size, emb.input_size, emb.original_size)


def _preparing_needs(image, err: MemoryError) -> str:
    shape = getattr(image, "shape", ())
    if len(shape) < 2:
        return str(err)
    H, W = shape[:2]
    # The uint8 plane (1 byte per pixel), or for colour the uint8 RGB and Pillow's 4-byte copy of it.
    per_pixel = 1 if len(shape) == 2 or shape[2] == 1 else 7
    return (
        f"this plane of {H} x {W} pixels needs about {size_text(H * W * per_pixel)} to be prepared for the image "
        f"encoder, more than is free ({err}); close other programs or segment a smaller region (a crop of the plane)"
    )
