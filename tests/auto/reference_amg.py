"""The reference automatic mask generator on the same weights as ours, at any SamConfig size."""

import torch

import reference
from helpers import randomize_
from napari_sam.model.build import build_sam


def reference_sam(cfg):
    """segment_anything's Sam built at ``cfg``'s size (its own builder knows only 1024 px and 256 channels)."""
    sa = reference.segment_anything()
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    emb = cfg.image_size // cfg.patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg.encoder_depth, embed_dim=cfg.encoder_dim, img_size=cfg.image_size, mlp_ratio=4,
            norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6), num_heads=cfg.encoder_heads,
            patch_size=cfg.patch_size, qkv_bias=True, use_rel_pos=True, global_attn_indexes=cfg.global_attn_indexes,
            window_size=cfg.window_size, out_chans=cfg.prompt_dim),
        prompt_encoder=PromptEncoder(embed_dim=cfg.prompt_dim, image_embedding_size=(emb, emb),
                                     input_image_size=(cfg.image_size, cfg.image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3, transformer_dim=cfg.prompt_dim, iou_head_depth=3,
            iou_head_hidden_dim=256,
            transformer=TwoWayTransformer(depth=cfg.decoder_depth, embedding_dim=cfg.prompt_dim,
                                          mlp_dim=cfg.decoder_mlp_dim, num_heads=cfg.decoder_heads)),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375],
    ).eval(), sa


def same_weights(ours, ref_model):
    """Load our model's weights into the reference model (the names are the same)."""
    ref_model.load_state_dict(ours.state_dict(), strict=True)
    return ref_model


def random_pair(cfg, seed=0):
    ours = build_sam(cfg)
    randomize_(ours, seed=seed)
    ref, sa = reference_sam(cfg)
    return ours.eval(), same_weights(ours, ref), sa
