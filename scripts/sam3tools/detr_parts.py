"""The DETR encoder and decoder re-plumbed over their own weights for the head pieces (same values).

* The DETR encoder's first layer split at its cross-attention: its self-attention block reads only
  the image, so vision_neck computes it once per image (e0, ``detr_first_block``) and the heads'
  encoder starts from it (``detr_encoder_from_given``) instead of recomputing it per prompt.
* The DETR decoder's box relative-position bias written once in its final layout
  (``detr_decoder_fast_rpb``) instead of through transformers' two extra copies.

Both return shallow copies: the model's own modules are left as they are, for the eager reference.
"""
from __future__ import annotations

import torch
from torch import nn

from .pieces import borrow


def detr_first_block(layer, f2: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """``Sam3DetrEncoderLayer.forward`` of the DETR encoder's first layer up to its cross-attention,
    on the image tokens as ``Sam3DetrEncoder`` flattens them ([B,D,h,w] -> [B,h*w,D]): layer norm,
    position encoding, self-attention, residual. Nothing in it depends on the prompt."""
    x = f2.flatten(2).transpose(1, 2)
    pos = p2.flatten(2).transpose(1, 2)
    hidden = layer.layer_norm1(x)
    with_pos = hidden + pos
    attn, _ = layer.self_attn(query=with_pos, key=with_pos, value=hidden)
    return layer.dropout(attn) + x


class DetrFirstBlock(nn.Module):
    def __init__(self, layer):
        super().__init__()
        borrow(self, layer, ("layer_norm1", "self_attn", "dropout"))

    def forward(self, f2, p2):
        return detr_first_block(self, f2, p2)


class Given:
    """Holds the e0 input of a head piece while Sam3Model.forward runs (a plain object, not a module)."""

    value: torch.Tensor | None = None


class DetrFirstLayerFromGiven(nn.Module):
    """The DETR encoder's first layer with its self-attention block already done (e0, see
    detr_first_block): the rest of ``Sam3DetrEncoderLayer.forward`` (cross-attention to the prompt,
    MLP), over the same weights."""

    def __init__(self, layer, given: Given):
        super().__init__()
        borrow(self, layer, ("cross_attn", "layer_norm2", "mlp", "layer_norm3", "dropout"))
        self.given = given

    def forward(self, vision_feats, prompt_feats, vision_pos_encoding, prompt_cross_attn_mask=None, **kwargs):
        hidden_states = self.given.value
        residual = hidden_states
        hidden_states = self.layer_norm2(hidden_states)
        hidden_states, _ = self.cross_attn(
            query=hidden_states, key=prompt_feats, value=prompt_feats, attention_mask=prompt_cross_attn_mask, **kwargs
        )
        hidden_states = self.dropout(hidden_states) + residual
        residual = hidden_states
        hidden_states = self.layer_norm3(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return self.dropout(hidden_states) + residual


def detr_encoder_from_given(detr_encoder, given: Given):
    """A shallow copy of the DETR encoder whose first layer starts from ``given.value``; the model's
    own encoder is left as it is (the eager reference runs it)."""
    import copy

    enc = copy.copy(detr_encoder)
    enc._modules = dict(detr_encoder._modules)
    layers = list(detr_encoder.layers)
    enc._modules["layers"] = nn.ModuleList([DetrFirstLayerFromGiven(layers[0], given), *layers[1:]])
    return enc


class _DecoderLayerWithHeldBias(nn.Module):
    """A DETR decoder layer whose vision cross-attention bias comes from ``held`` (see
    detr_decoder_fast_rpb) instead of the argument its decoder passes."""

    def __init__(self, layer, held: Given):
        super().__init__()
        self.layer = layer
        self.held = held

    def forward(self, *args, vision_cross_attn_mask=None, **kwargs):
        if vision_cross_attn_mask is not None:
            vision_cross_attn_mask = self.held.value
        return self.layer(*args, vision_cross_attn_mask=vision_cross_attn_mask, **kwargs)


def rpb_with_presence_row(decoder, reference_boxes: torch.Tensor, spatial_shape) -> torch.Tensor:
    """``Sam3DetrDecoder._get_rpb_matrix`` followed by the zero row its forward prepends for the
    presence token (``F.pad(rpb, (0, 0, 1, 0))``), written once, straight into its final layout.

    transformers adds the y and x terms as [B, Q, h, w, heads], copies that to [B, heads, Q, h*w]
    (contiguous) and copies it again to pad it: two extra passes over a [B, heads, Q+1, h*w] tensor
    per decoder layer (33 MB at facebook/sam3's size, 6 layers a prompt). Here each term is moved to
    heads-first while it is small and the broadcast add writes the padded tensor's rows directly;
    the values are the same (the same sums of the same terms)."""
    import math

    from transformers.models.sam3.modeling_sam3 import box_cxcywh_to_xyxy

    height, width = spatial_shape
    boxes_xyxy = box_cxcywh_to_xyxy(reference_boxes)
    batch_size, num_queries, _ = boxes_xyxy.shape
    coords_h, coords_w = decoder._get_coords(height, width, dtype=reference_boxes.dtype, device=reference_boxes.device)

    def log_scaled(d):
        d = d * 8
        return torch.sign(d) * torch.log2(torch.abs(d) + 1.0) / math.log2(8)

    deltas_y = (coords_h.view(1, -1, 1) - boxes_xyxy.reshape(-1, 1, 4)[:, :, 1:4:2]).view(batch_size, num_queries, -1, 2)
    deltas_x = (coords_w.view(1, -1, 1) - boxes_xyxy.reshape(-1, 1, 4)[:, :, 0:3:2]).view(batch_size, num_queries, -1, 2)
    term_y = decoder.box_rpb_embed_y(log_scaled(deltas_y)).permute(0, 3, 1, 2)  # [B, heads, Q, h]
    term_x = decoder.box_rpb_embed_x(log_scaled(deltas_x)).permute(0, 3, 1, 2)  # [B, heads, Q, w]
    h, w = term_y.shape[-1], term_x.shape[-1]
    out = torch.empty(batch_size, term_y.shape[1], num_queries + 1, h, w, dtype=term_y.dtype, device=term_y.device)
    out[:, :, 0].zero_()
    torch.add(term_y.unsqueeze(-1), term_x.unsqueeze(-2), out=out[:, :, 1:])
    return out.view(batch_size, term_y.shape[1], num_queries + 1, h * w)


def detr_decoder_fast_rpb(detr_decoder):
    """A shallow copy of the DETR decoder (the model's own is left as it is: the eager reference runs
    it) whose box relative-position bias is made by rpb_with_presence_row. Its forward still runs
    as transformers wrote it: ``_get_rpb_matrix`` hands it an empty [B, heads, Q, 0] placeholder,
    which its F.pad turns into an empty [B, heads, Q+1, 0] at no cost, and each layer takes the real
    bias from where ``_get_rpb_matrix`` left it."""
    import copy
    import types

    held = Given()
    dec = copy.copy(detr_decoder)
    dec._modules = dict(detr_decoder._modules)
    dec._modules["layers"] = nn.ModuleList([_DecoderLayerWithHeldBias(layer, held) for layer in detr_decoder.layers])

    def _get_rpb_matrix(self, reference_boxes, spatial_shape):
        held.value = rpb_with_presence_row(self, reference_boxes, spatial_shape)
        return held.value[:, :, 1:, :0]

    dec._get_rpb_matrix = types.MethodType(_get_rpb_matrix, dec)
    return dec
