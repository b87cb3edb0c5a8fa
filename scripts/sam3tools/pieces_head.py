"""The detector head's traced pieces and the eager head they must reproduce.

* head_text.pt       (f2, p2, e0, text_features [B,L,D], text_mask bool [B,L])
  -> (pred_logits [B,Q], pred_boxes [B,Q,4] xyxy normalised, presence_logits [B,1],
  mask_embeddings [B,Q,C], mask_bias [B,Q], visual [B,C,h,w]): everything of the detector that
  decides what is found, and the two inputs of the mask logits that depend on the prompt (see
  MaskDecoderEmbeddings). visual is the mask decoder's coarsest pixel-decoder input: the DETR
  encoder's image tokens after the mask decoder's cross-attention to the prompt.
* head_text_boxes.pt (f2, p2, e0, text_features, text_mask, input_boxes [B,K,4] cxcywh normalised,
  input_boxes_labels int64 [B,K]: 1 positive, 0 negative, -10 padding) -> the same 6 outputs. K >= 1.

The heads run ``Sam3Model.forward`` itself (from the FPN features on, with ``vision_embeds`` and
``text_embeds``) on a module that holds only the submodules that path touches, so each .pt holds only
its own weights and the traced code path is transformers' own, except that the DETR encoder's first
layer starts from e0 (its self-attention block done) instead of recomputing it, and that the mask
decoder stops before its pixel decoder (detr_parts.py, MaskDecoderEmbeddings). Inputs that may
arrive in another dtype (text features, boxes, masks, labels) are cast inside the piece.
"""
from __future__ import annotations

import torch
from torch import nn

from .detr_parts import Given, detr_decoder_fast_rpb, detr_encoder_from_given
from .errors import ExportError
from .pieces import borrow


class _Taken:
    """Holds what MaskDecoderEmbeddings hands back past Sam3Model.forward (a plain object)."""

    value: tuple | None = None


class MaskDecoderEmbeddings(nn.Module):
    """``Sam3MaskDecoder.forward`` up to its pixel decoder, over the same weights:
    pred_masks[q] = mask_embedding[q] . instance_projection(pixel_embedding), and the 1x1
    instance projection folds into the query side, so

        pred_masks[b, q] = emb[b, q] . pixel_embedding[b] + bias[b, q]
        with emb = mask_embedding @ W and bias = mask_embedding @ b_proj,
        pixel_embedding = pixel_decoder(f0, f1, visual).

    This hands back (emb, bias, visual); the pixel decoder is its own piece (PixelDecoderPiece). The
    addon runs it only for prompts where some query passes the score threshold, and computes the
    product only for those queries (a few, against 200), so the 1x1 convolution at the mask
    resolution is never run; the semantic head, which no caller reads, is not run. Nor are the
    per-call copies ``_embed_pixels`` makes of the FPN features."""

    def __init__(self, mask_decoder, taken: _Taken):
        super().__init__()
        borrow(self, mask_decoder, ("config", "mask_embedder", "instance_projection", "prompt_cross_attn", "prompt_cross_attn_norm", "prompt_cross_attn_dropout"))
        self.taken = taken

    def forward(self, decoder_queries, backbone_features, encoder_hidden_states, prompt_features=None, prompt_mask=None, **kwargs):
        from transformers.masking_utils import create_bidirectional_mask
        from transformers.models.sam3.modeling_sam3 import Sam3MaskDecoderOutput

        if prompt_features is not None:
            residual = encoder_hidden_states
            normed = self.prompt_cross_attn_norm(encoder_hidden_states)
            cross_attn_mask = None
            if prompt_mask is not None:
                cross_attn_mask = create_bidirectional_mask(
                    config=self.config, inputs_embeds=normed, encoder_hidden_states=prompt_features, attention_mask=prompt_mask
                )
            attn, _ = self.prompt_cross_attn(query=normed, key=prompt_features, value=prompt_features, attention_mask=cross_attn_mask, **kwargs)
            encoder_hidden_states = residual + self.prompt_cross_attn_dropout(attn)
        # _embed_pixels without its copies: the encoder's image tokens replace the coarsest level.
        height, width = backbone_features[-1].shape[-2:]
        visual = encoder_hidden_states[:, : height * width, :]
        visual = visual.transpose(1, 2).reshape(visual.shape[0], visual.shape[2], height, width).contiguous()
        mask_embed = self.mask_embedder(decoder_queries)
        w = self.instance_projection.weight[:, :, 0, 0]
        emb = mask_embed @ w
        bias = mask_embed @ self.instance_projection.bias if self.instance_projection.bias is not None else mask_embed[..., 0] * 0
        self.taken.value = (emb, bias, visual)
        return Sam3MaskDecoderOutput(pred_masks=None, semantic_seg=None)


def with_masks(outputs, pixel_decoder, f0, f1):
    """A head's 6 outputs, its pixel decoder run on its visual output and the mask factors multiplied
    out: the eager head's 4 outputs (what the addon computes for the kept queries)."""
    if len(outputs) != 6:
        raise ExportError(f"a head piece returned {len(outputs)} outputs, expected 6")
    pixel_embed = pixel_decoder(f0, f1, outputs[5])
    if isinstance(pixel_embed, (tuple, list)):
        (pixel_embed,) = pixel_embed
    return (*outputs[:3], masks_from_embeddings(outputs[3], outputs[4], pixel_embed))


def masks_from_embeddings(emb: torch.Tensor, bias: torch.Tensor, pixel_embed: torch.Tensor) -> torch.Tensor:
    """[B,Q,C], [B,Q], [B,C,M,M] -> pred_masks [B,Q,M,M] (what the addon computes for kept queries)."""
    return torch.einsum("bqc,bchw->bqhw", emb, pixel_embed) + bias[:, :, None, None]


class _HeadBase(nn.Module):
    def __init__(self, model, with_boxes: bool, given_first: bool = True):
        super().__init__()
        self.config = model.config
        if with_boxes:
            self.geometry_encoder = model.geometry_encoder
        self._given = Given() if given_first else None
        self.detr_encoder = detr_encoder_from_given(model.detr_encoder, self._given) if given_first else model.detr_encoder
        # The box relative-position bias without transformers' two extra copies (see rpb_with_presence_row).
        self.detr_decoder = detr_decoder_fast_rpb(model.detr_decoder) if given_first else model.detr_decoder
        self._taken = _Taken() if given_first else None
        self.mask_decoder = MaskDecoderEmbeddings(model.mask_decoder, self._taken) if given_first else model.mask_decoder
        self.dot_product_scoring = model.dot_product_scoring
        self.compute_dtype = model.text_projection.weight.dtype

    def run(self, f0, f1, f2, pos, e0, text_features, text_mask, input_boxes=None, input_boxes_labels=None):
        """pos: p2, or (p0, p1, p2) for the eager reference. Sam3Model.forward reads only the coarsest
        level's position encoding (DETR and geometry encoders), so the traced heads take p2 alone."""
        from transformers import Sam3Model
        from transformers.modeling_outputs import BaseModelOutputWithPooling
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        # Sam3Model.forward drops the last FPN level ([:-1]); f2/p2 stand in for it.
        p0, p1, p2 = pos if isinstance(pos, tuple) else (pos, pos, pos)
        vision = Sam3VisionEncoderOutput(fpn_hidden_states=(f0, f1, f2, f2), fpn_position_encoding=(p0, p1, p2, p2))
        text = BaseModelOutputWithPooling(pooler_output=text_features.to(self.compute_dtype))
        kwargs = {}
        if input_boxes is not None:
            kwargs = dict(input_boxes=input_boxes.to(self.compute_dtype), input_boxes_labels=input_boxes_labels.to(torch.long))
        if self._given is not None:
            self._given.value = e0
        try:
            out = Sam3Model.forward(
                self, vision_embeds=vision, text_embeds=text, attention_mask=text_mask.to(torch.bool), return_dict=True, **kwargs
            )
            if self._taken is None:
                return out.pred_logits, out.pred_boxes, out.presence_logits, out.pred_masks
            emb, bias, visual = self._taken.value
            return out.pred_logits, out.pred_boxes, out.presence_logits, emb, bias, visual
        finally:
            if self._given is not None:
                self._given.value = None
            if self._taken is not None:
                self._taken.value = None


class HeadTextPiece(_HeadBase):
    def __init__(self, model):
        super().__init__(model, with_boxes=False)

    def forward(self, f2, p2, e0, text_features, text_mask):
        # Nothing before the pixel decoder reads the 4x and 2x levels: f2 stands in for them.
        return self.run(f2, f2, f2, p2, e0, text_features, text_mask)


class HeadTextBoxesPiece(_HeadBase):
    def __init__(self, model):
        super().__init__(model, with_boxes=True)

    def forward(self, f2, p2, e0, text_features, text_mask, input_boxes, input_boxes_labels):
        return self.run(f2, f2, f2, p2, e0, text_features, text_mask, input_boxes, input_boxes_labels)


class HeadEager(nn.Module):
    """The untouched eager head (Sam3Model.forward from the FPN features, no e0, every level's real
    position encoding): what a traced head fed with e0 and p2 alone must reproduce."""

    def __init__(self, model, with_boxes: bool):
        super().__init__()
        self.piece = _HeadBase(model, with_boxes, given_first=False)
        self.position_encoding = model.vision_encoder.neck.position_encoding

    def forward(self, f0, f1, f2, p2, e0, *rest):
        p0, p1 = (self.position_encoding(t.shape, t.device, t.dtype) for t in (f0, f1))
        return self.piece.run(f0, f1, f2, (p0, p1, p2), None, *rest)
