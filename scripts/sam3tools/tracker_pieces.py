"""The video tracker's traced pieces (C = hidden size, g = resolution / patch, R = resolution):
transformers' ``Sam3TrackerVideoModel`` methods run on modules that hold only what each touches.

* tracker_neck.pt     (hidden [1,g*g,V]: the output of the bundle's vision_backbone.pt) -> (s0 [1,C/8,4g,4g],
  s1 [1,C/4,2g,2g], top [1,C,g,g], top_pos [1,C,g,g]): ``get_image_features`` after the ViT (tracker FPN
  neck, conv_s0/conv_s1), kept NCHW. The ViT itself is not here: transformers maps the detector's ViT
  onto the tracker, and the exporter checks the two are the same tensors, so the bundle keeps one copy.
* tracker_decode_multi.pt / tracker_decode_single.pt  (s0, s1, pix_feat [B,C,g,g], points [B,1,N,2]
  in model pixels, labels int32 [B,1,N]) -> (low_res_masks [B,1,4g,4g], high_res_masks [B,1,R,R],
  object_pointer [B,C], object_score_logits [B,1,1]): ``_single_frame_forward`` with
  multimask_output True / False (the best-IoU mask is picked inside, as transformers does).
* tracker_mask_prompt.pt (s0, s1, top, mask [B,1,R,R] 0/1) -> the same 4 outputs:
  ``_use_mask_as_output`` (a mask prompt is taken as the output and gives the object pointer).
* tracker_interactive_multi.pt / tracker_interactive_single.pt (s0, s1, pix_feat [B,C,g,g]: top as the
  neck makes it, points [B,1,N,2] in model pixels, labels int32 [B,1,N], mask_input
  [B,1,4g,4g] low-res logits, has_mask bool [B]) -> (masks [B,1,K,4g,4g] low-res logits, iou_scores
  [B,1,K], object_score_logits [B,1,1]): ``Sam3TrackerModel.forward`` on a single image after its
  vision encoder (interactive segmentation), K = 3 with multimask_output True, K = 1 with False
  (the mask decoder's dynamic choice by stability, as transformers does). Rows without has_mask take
  the prompt encoder's no-mask embedding, rows with it the mask embedding of mask_input. No
  no-memory embedding on top: transformers 5.17's Sam3TrackerModel adds it to the neck's fourth
  (0.5x) level, which it then drops (native/core/interactive.cc says more).
* memory_encoder.pt / memory_encoder_points.pt (top [B,C,g,g], high_res_masks [B,1,R,R],
  object_score_logits [B,1,1]) -> (maskmem_features bfloat16 [B,64,g,g], maskmem_pos [B,64,g,g]):
  ``_encode_new_memory`` with is_mask_from_pts False / True.
"""
from __future__ import annotations

import torch
from torch import nn

from .pieces import borrow
from .pieces_vision import spatial
from .subpixel import fast_fpn_level


class TrackerNeckPiece(nn.Module):
    """The tracker's FPN neck with conv_s0 / conv_s1 folded into its 4x and 2x levels, both in their
    sub-pixel form (subpixel.py: at facebook/sam3's size the 4x level's 3x3 convolution over 256
    channels at 288x288 becomes a 2x2 one at 144x144 that makes only conv_s0's 32); the unused 0.5x
    level is not run."""

    def __init__(self, tracker, grid: int):
        super().__init__()
        neck = tracker.vision_encoder.neck
        layers = list(neck.fpn_layers)
        self.s0 = fast_fpn_level(layers[0], tracker.mask_decoder.conv_s0)
        self.s1 = fast_fpn_level(layers[1], tracker.mask_decoder.conv_s1)
        self.top = layers[2]
        self.position_encoding = neck.position_encoding
        self.grid = grid

    def forward(self, hidden):
        x = spatial(hidden, self.grid)
        top = self.top(x)
        return self.s0(x), self.s1(x), top, self.position_encoding(top.shape, top.device, top.dtype)


class TrackerVisionEager(nn.Module):
    """The tracker's whole eager ``get_image_features`` (NCHW): what backbone + tracker_neck reproduce."""

    def __init__(self, tracker):
        super().__init__()
        self.vision_encoder = tracker.vision_encoder
        self.mask_decoder = tracker.mask_decoder

    def forward(self, pixel_values):
        out = self.vision_encoder(pixel_values, return_dict=True)
        f = out.fpn_hidden_states
        return self.mask_decoder.conv_s0(f[0]), self.mask_decoder.conv_s1(f[1]), f[2], out.fpn_position_encoding[2]


class _TrackerMethods(nn.Module):
    """Holds the tracker submodules a method touches and borrows Sam3TrackerVideoModel's methods."""

    def __init__(self, tracker, names):
        super().__init__()
        borrow(self, tracker, ("config", "image_size", "backbone_feature_sizes", "hidden_dim", *names))


DECODE_MODULES = ("shared_image_embedding", "prompt_encoder", "mask_decoder", "object_pointer_proj", "no_object_pointer")


class TrackerDecodePiece(_TrackerMethods):
    def __init__(self, tracker, multimask: bool):
        super().__init__(tracker, DECODE_MODULES)
        self.multimask = multimask

    def forward(self, s0, s1, pix_feat, points, labels):
        from transformers import Sam3TrackerVideoModel as M

        self.get_image_wide_positional_embeddings = lambda: M.get_image_wide_positional_embeddings(self)
        out = M._single_frame_forward(
            self, input_points=points, input_labels=labels.to(torch.int32), image_embeddings=[s0, s1, pix_feat],
            multimask_output=self.multimask,
        )
        return out.pred_masks, out.high_res_masks, out.object_pointer, out.object_score_logits


class TrackerMaskPromptPiece(_TrackerMethods):
    def __init__(self, tracker):
        super().__init__(tracker, DECODE_MODULES + ("mask_downsample",))

    def forward(self, s0, s1, top, mask):
        from transformers import Sam3TrackerVideoModel as M

        self.get_image_wide_positional_embeddings = lambda: M.get_image_wide_positional_embeddings(self)
        self._single_frame_forward = lambda **kw: M._single_frame_forward(self, **kw)
        out = M._use_mask_as_output(self, top, [s0, s1], mask)
        return out.pred_masks, out.high_res_masks, out.object_pointer, out.object_score_logits


class MemoryEncoderPiece(_TrackerMethods):
    def __init__(self, tracker, from_points: bool):
        super().__init__(tracker, ("memory_encoder", "prompt_encoder", "occlusion_spatial_embedding_parameter"))
        self.from_points = from_points

    def forward(self, top, high_res_masks, object_score_logits):
        from transformers import Sam3TrackerVideoModel as M

        b, c, h, w = top.shape
        feats = top.flatten(2).permute(2, 0, 1)  # (HW)BC, as the model keeps it
        mem, pos = M._encode_new_memory(self, feats, high_res_masks, object_score_logits, self.from_points)
        # (HW)BC -> BCHW
        return mem.permute(1, 2, 0).reshape(b, -1, h, w), pos.permute(1, 2, 0).reshape(b, -1, h, w)


class InteractiveDecodePiece(_TrackerMethods):
    """``Sam3TrackerModel.forward`` from its image embeddings on: the prompt encoder (points with the
    padding point it adds when there is no box; a box arrives as two points labelled 2 and 3 before
    that padding point, which is the very embedding ``_embed_boxes`` makes) and the mask decoder. The
    modules are the video tracker's (the same weights Sam3TrackerModel loads)."""

    def __init__(self, tracker, multimask: bool):
        super().__init__(tracker, ("shared_image_embedding", "prompt_encoder", "mask_decoder"))
        self.multimask = multimask
        # get_image_wide_positional_embeddings depends on the weights only: computed here once, by
        # the same code on the same device (the same values), instead of a sin/cos over the whole
        # grid on every click (~10% of a click on the bench model).
        from transformers import Sam3TrackerModel as M

        with torch.no_grad():
            self.register_buffer("image_pe", M.get_image_wide_positional_embeddings(self).clone(), persistent=True)

    def forward(self, s0, s1, pix_feat, points, labels, mask_input, has_mask):
        b = pix_feat.shape[0]
        pos = self.image_pe.repeat(b, 1, 1, 1)
        sparse, dense = self.prompt_encoder(input_points=points, input_labels=labels.to(torch.int32), input_boxes=None, input_masks=None)
        dense_mask = self.prompt_encoder.mask_embed(mask_input.to(pix_feat.dtype))
        dense = torch.where(has_mask.view(b, 1, 1, 1), dense_mask, dense)
        masks, iou, _, obj = self.mask_decoder(
            image_embeddings=pix_feat, image_positional_embeddings=pos, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=self.multimask, high_resolution_features=[s0, s1],
        )
        return masks, iou, obj
