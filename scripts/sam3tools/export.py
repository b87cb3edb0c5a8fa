"""Export a SAM 3 checkpoint to a model bundle: eight TorchScript pieces, tokenizer.json, manifest.json
(plus the video tracker's pieces for sam3_video checkpoints: see tracker_export.py).

The pieces and their exact signatures (the C++ addon depends on them; inputs are positional tensors,
outputs are tuples):

* vision_backbone.pt (pixel_values [B,3,R,R] bundle dtype) -> (hidden [B,g*g,V],): the ViT,
  ``vision_encoder.backbone(pixel_values).last_hidden_state``. It is its own piece because the video
  tracker's neck reads the same ViT output: one copy of the ViT weights serves both, and a frame
  that both the detector and the tracker need runs the ViT once.
* vision_neck.pt     (hidden [B,g*g,V]) -> (f0, f1, f2, p2, e0): the detector's FPN neck,
  ``vision_encoder(pixel_values).fpn_hidden_states[:-1]`` and ``.fpn_position_encoding[2]`` (the
  only position encoding Sam3Model reads) from
  the ViT output on (``Sam3VisionModel.forward`` after its backbone call), plus e0 [B,h*w,D]: the
  first DETR encoder layer's self-attention block over f2's tokens. That block reads only the
  image (the prompt enters at the layer's cross-attention), so it is computed once per image here
  and kept with the features instead of once per prompt in the head. The 4x and 2x FPN levels run
  in their sub-pixel form (subpixel.py: the same linear map with far fewer FLOPs) and the 0.5x
  level, which Sam3Model drops, is not computed.
* text_encoder.pt    (input_ids int64 [N,L], attention_mask int64 [N,L]) -> (text_features [N,L,D],):
  ``Sam3Model.get_text_features(...).pooler_output``.
* head_text.pt       (f2, p2, e0, text_features [B,L,D], text_mask bool [B,L])
  -> (pred_logits [B,Q], pred_boxes [B,Q,4] xyxy normalised, presence_logits [B,1],
  mask_embeddings [B,Q,C], mask_bias [B,Q], visual [B,C,h,w]): everything of the detector that
  decides what is found, and the two inputs of the mask logits that depend on the prompt (see
  MaskDecoderEmbeddings). visual is the mask decoder's coarsest pixel-decoder input: the DETR
  encoder's image tokens after the mask decoder's cross-attention to the prompt.
* head_text_boxes.pt (f2, p2, e0, text_features, text_mask, input_boxes [B,K,4] cxcywh normalised,
  input_boxes_labels int64 [B,K]: 1 positive, 0 negative, -10 padding) -> the same 6 outputs. K >= 1.
* pixel_decoder.pt   (f0 [1 or B,C,4h,4w], f1 [1 or B,C,2h,2w], visual [B,C,h,w]) -> (pixel_embeddings
  [B,C,M,M],): ``Sam3PixelDecoder``. The mask logits are pred_masks[b,q] = mask_embeddings[b,q] .
  pixel_embeddings[b] + mask_bias[b,q]. It is its own piece because on the detector's path it is
  the largest single cost per prompt (a 3x3 convolution at the mask resolution), and its output is
  read only for the queries that pass the score threshold: the addon runs it only for prompts that
  found something. A batch-1 f0/f1 broadcasts over the prompts of one image.
* pixel_skip.pt      (f0, f1) -> (s0, s1) and pixel_split.pt (s0 [1 or B], s1 [1 or B], visual [B,C,h,w])
  -> (pixel_embeddings,): the same decoder split at its linearity (PixelSkipPiece). s0/s1 read only
  the image: once an image has had a few prompts that found something, the addon computes them
  once, keeps them in place of f0/f1, and every further prompt runs pixel_split, whose convolutions
  run at the low resolution (~35% less time than pixel_decoder a prompt on a CPU).

The heads run ``Sam3Model.forward`` itself (from the FPN features on, with ``vision_embeds`` and
``text_embeds``) on a module that holds only the submodules that path touches, so each .pt holds only
its own weights and the traced code path is transformers' own, except that the DETR encoder's first
layer starts from e0 (its self-attention block done) instead of recomputing it, and that the mask
decoder stops before its pixel decoder. Inputs that may arrive in another
dtype (text features, boxes, masks, labels) are cast inside the piece.

Every piece is traced on the target device and dtype (TorchScript bakes the trace device into tensors
created inside forward), then checked against eager on fresh inputs of a different batch size,
prompt length or box count before it is saved.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time
import warnings

import torch
from torch import nn

from .checkpoint_io import (
    CheckpointError,
    check_tokenizer_files,
    check_weight_files,
    load_model,
    load_tokenizer,
    model_image_size,
    preprocessing,
    read_config,
    resolve_checkpoint,
    sha256_file,
)
from .subpixel import NearestUpConvAdd, fast_fpn_level
from .tokenizer import TEXT_MAX_LENGTH, bundle_tokenizer_json
from .tracker_export import TRACKER_FILES, export_tracker, has_tracker

EXPORTER_VERSION = "6"
BUNDLE_FORMAT = "sam3-bundle"
BUNDLE_FORMAT_VERSION = 6
VISUAL_PROMPT = "visual"  # Sam3Processor's text for box-only prompts
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Traced vs eager (relative to max(1, max |eager|)): the FPN levels' sub-pixel form and the mask
# factors change the order of float sums (~1e-6 in float32); these also bound what fusion on an
# accelerator may change.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}
PAD_BOX_LABEL = -10


class ExportError(Exception):
    """The export itself failed (a piece did not trace or does not reproduce eager)."""


class UsageError(Exception):
    """Bad command-line values (device, dtype, output folder)."""


# ------------------------------------------------------------------------------------------ pieces


class VisionBackbonePiece(nn.Module):
    def __init__(self, vision_encoder):
        super().__init__()
        self.backbone = vision_encoder.backbone

    def forward(self, pixel_values):
        return (self.backbone(pixel_values).last_hidden_state,)


def spatial(hidden: torch.Tensor, grid: int) -> torch.Tensor:
    """[B, g*g, V] -> [B, V, g, g], as ``Sam3VisionModel.forward`` hands the ViT output to its neck."""
    return hidden.view(hidden.shape[0], grid, grid, -1).permute(0, 3, 1, 2)


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
        self.layer_norm1 = layer.layer_norm1
        self.self_attn = layer.self_attn
        self.dropout = layer.dropout

    def forward(self, f2, p2):
        return detr_first_block(self, f2, p2)


class VisionNeckPiece(nn.Module):
    """The detector's FPN neck without its unused 0.5x level, the 4x and 2x levels in their
    sub-pixel form (see subpixel.py), plus the first DETR encoder self-attention block (e0)."""

    def __init__(self, model, grid: int):
        super().__init__()
        neck = model.vision_encoder.neck
        # The 4x and 2x levels come out channels-last: only the pixel decoder reads them, and its
        # convolutions run ~20% faster on that layout (same values; the tracker keeps its own).
        self.levels = nn.ModuleList([fast_fpn_level(layer, channels_last=i < 2) for i, layer in enumerate(list(neck.fpn_layers)[:3])])
        self.position_encoding = neck.position_encoding
        self.detr_first = DetrFirstBlock(model.detr_encoder.layers[0])
        self.grid = grid

    def forward(self, hidden):
        x = spatial(hidden, self.grid)
        f = [level(x) for level in self.levels]
        # Only the coarsest level's position encoding is read (by the DETR encoder and the geometry
        # encoder); those of the finer levels, ~60 ms of sin/cos at 288x288 on a CPU, are not made.
        p2 = self.position_encoding(f[2].shape, f[2].device, f[2].dtype)
        return f[0], f[1], f[2], p2, self.detr_first(f[2], p2)


class _Given:
    """Holds the e0 input of a head piece while Sam3Model.forward runs (a plain object, not a module)."""

    value: torch.Tensor | None = None


class DetrFirstLayerFromGiven(nn.Module):
    """The DETR encoder's first layer with its self-attention block already done (e0, see
    detr_first_block): the rest of ``Sam3DetrEncoderLayer.forward`` (cross-attention to the prompt,
    MLP), over the same weights."""

    def __init__(self, layer, given: _Given):
        super().__init__()
        self.cross_attn = layer.cross_attn
        self.layer_norm2 = layer.layer_norm2
        self.mlp = layer.mlp
        self.layer_norm3 = layer.layer_norm3
        self.dropout = layer.dropout
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


def detr_encoder_from_given(detr_encoder, given: _Given):
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

    def __init__(self, layer, held: _Given):
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

    held = _Given()
    dec = copy.copy(detr_decoder)
    dec._modules = dict(detr_decoder._modules)
    dec._modules["layers"] = nn.ModuleList([_DecoderLayerWithHeldBias(layer, held) for layer in detr_decoder.layers])

    def _get_rpb_matrix(self, reference_boxes, spatial_shape):
        held.value = rpb_with_presence_row(self, reference_boxes, spatial_shape)
        return held.value[:, :, 1:, :0]

    dec._get_rpb_matrix = types.MethodType(_get_rpb_matrix, dec)
    return dec


class VisionEncoderEager(nn.Module):
    """The whole eager vision encoder: what backbone + neck together must reproduce."""

    def __init__(self, model):
        super().__init__()
        self.vision_encoder = model.vision_encoder
        self.detr_first_layer = model.detr_encoder.layers[0]

    def forward(self, pixel_values):
        out = self.vision_encoder(pixel_values)
        f = out.fpn_hidden_states[:-1]
        p = out.fpn_position_encoding[:-1]
        return f[0], f[1], f[2], p[2], detr_first_block(self.detr_first_layer, f[2], p[2])


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


def backbone_fingerprint(backbone: nn.Module) -> dict:
    """sha256 of every ViT tensor: the tracker must read the very same ViT as the detector."""
    import hashlib

    out = {}
    for name, t in backbone.state_dict().items():
        out[name] = hashlib.sha256(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
    return out


class TextEncoderPiece(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.config = model.config
        self.text_encoder = model.text_encoder
        self.text_projection = model.text_projection

    def forward(self, input_ids, attention_mask):
        from transformers import Sam3Model

        out = Sam3Model.get_text_features(self, input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return (out.pooler_output,)


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
        self.config = mask_decoder.config
        self.mask_embedder = mask_decoder.mask_embedder
        self.instance_projection = mask_decoder.instance_projection
        self.prompt_cross_attn = mask_decoder.prompt_cross_attn
        self.prompt_cross_attn_norm = mask_decoder.prompt_cross_attn_norm
        self.prompt_cross_attn_dropout = mask_decoder.prompt_cross_attn_dropout
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


def pixel_decode_of(pixel_decoder, features: list[torch.Tensor]) -> torch.Tensor:
    """``Sam3PixelDecoder.forward`` with its nearest 2x up-sampling and skip addition done as one
    broadcast add (up(prev) + feat with up by exactly 2 is feat viewed [B,H,2,W,2,C] plus prev viewed
    [B,H,1,W,1,C]: the same sums, without the up-sampled map written out at the finest levels), in
    channels-last layout: the neck hands f0/f1 channels-last, so that add reads them as they are, and
    the convolutions, norms and ReLUs after it run channels-last (faster on a CPU; same values up to
    float rounding). The skip features may have batch 1 against a batch-B prev: one image's
    features, B prompts."""
    import torch.nn.functional as F

    prev = features[-1]
    for idx, feat in enumerate(reversed(features[:-1])):
        b, c, h, w = prev.shape
        if tuple(feat.shape[-2:]) == (2 * h, 2 * w):
            # reshape: a view for channels-last operands, a copy otherwise (the coarsest map).
            skip = feat.permute(0, 2, 3, 1).reshape(feat.shape[0], h, 2, w, 2, c)
            up = prev.permute(0, 2, 3, 1).reshape(b, h, 1, w, 1, c)
            prev = (skip + up).view(b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
        else:
            prev = F.interpolate(prev, size=feat.shape[-2:], mode="nearest") + feat
        prev = pixel_decoder.conv_layers[idx](prev)
        prev = pixel_decoder.norms[idx](prev)
        prev = F.relu(prev, inplace=True)  # the norm's fresh output: in place saves a pass
    return prev


class PixelDecoderPiece(nn.Module):
    """(f0, f1, visual) -> pixel embeddings [B,C,M,M]: ``Sam3PixelDecoder`` over the same weights."""

    def __init__(self, model):
        super().__init__()
        self.pixel_decoder = model.mask_decoder.pixel_decoder

    def forward(self, f0, f1, visual):
        return pixel_decode_of(self.pixel_decoder, [f0, f1, visual])


def pixel_stages(pixel_decoder) -> tuple[list[nn.Module], list[nn.Module]]:
    """The convolutions and norms of the pixel decoder's two stages that Sam3Model runs: it hands the
    decoder three levels (4x, 2x and the encoder's 1x tokens), so of its ``num_upsampling_stages``
    (3 in facebook/sam3's config) only the first two ever run."""
    convs, norms = list(pixel_decoder.conv_layers), list(pixel_decoder.norms)
    if len(convs) < 2 or len(norms) < 2:
        raise ExportError(f"the pixel decoder has {len(convs)} up-sampling stages; Sam3Model runs 2")
    return convs[:2], norms[:2]


class PixelSkipPiece(nn.Module):
    """(f0, f1) -> (s0, s1): the pixel decoder's convolutions applied to its skip inputs alone, with
    their biases: s0 = conv_layers[1](f0), s1 = conv_layers[0](f1). They read only the image. Each
    stage computes conv(up(prev) + skip), and a convolution is linear, so that is
    conv(up(prev)) + conv(skip): with s0 and s1 kept with an image's features, every further prompt
    on it pays only for the up-sampled half, which NearestUpConvAdd computes at the low resolution
    for 16/36 of the multiply-adds. s0/s1 have f0/f1's shapes (and channels-last layout)."""

    def __init__(self, model):
        super().__init__()
        self.conv_layers = nn.ModuleList(pixel_stages(model.mask_decoder.pixel_decoder)[0])

    def forward(self, f0, f1):
        return self.conv_layers[1](f0), self.conv_layers[0](f1)


class PixelSplitPiece(nn.Module):
    """(s0 [1 or B,C,M,M], s1 [1 or B,C,M/2,M/2], visual [B,C,h,w]) -> pixel embeddings [B,C,M,M]:
    Sam3PixelDecoder from PixelSkipPiece's outputs (same values up to float rounding)."""

    def __init__(self, model):
        super().__init__()
        convs, norms = pixel_stages(model.mask_decoder.pixel_decoder)
        self.up = nn.ModuleList([NearestUpConvAdd(conv) for conv in convs])
        self.norms = nn.ModuleList(norms)

    def forward(self, s0, s1, visual):
        import torch.nn.functional as F

        x = visual
        for idx, skip in enumerate((s1, s0)):
            x = F.relu(self.norms[idx](self.up[idx](x, skip)), inplace=True)
        return x


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
        self._given = _Given() if given_first else None
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


# ------------------------------------------------------------------------------------------ helpers


def model_image_size_of(config) -> int:
    size = config.vision_config.backbone_config.image_size
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def parse_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device must be cpu or cuda[:N], got '{device}'") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise UsageError(f"--device must be cpu or cuda[:N], got '{device}'")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {device}: this torch build ({torch.__version__}) has no usable CUDA device")
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present")
    return torch.device("cuda", index)


def _flat(outputs) -> list[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def compare(name: str, got, want, dtype: torch.dtype, what: str) -> float:
    got, want = _flat(got), _flat(want)
    if len(got) != len(want):
        raise ExportError(f"{name}: traced piece returned {len(got)} outputs, eager {len(want)} ({what})")
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        if g.shape != w.shape or g.dtype != w.dtype:
            raise ExportError(
                f"{name}: output {i} is {tuple(g.shape)} {g.dtype} traced but {tuple(w.shape)} {w.dtype} eager ({what}); "
                "the trace does not generalise"
            )
        if g.numel() == 0:
            continue
        scale = max(1.0, w.detach().abs().max().float().item())
        diff = (g.float() - w.float()).abs().max().item() / scale
        if not diff <= TOLERANCE[dtype]:  # also catches NaN
            raise ExportError(f"{name}: output {i} differs from eager by {diff:.3g} (relative, {what}); tolerance {TOLERANCE[dtype]:g}")
        worst = max(worst, diff)
    return worst


def trace(piece: nn.Module, inputs: tuple) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        # Shape-dependent Python in transformers is resolved at trace time on purpose (resolution,
        # sequence layout); the checks on different batch sizes below are what we rely on.
        warnings.simplefilter("ignore")
        return torch.jit.trace(piece, inputs, check_trace=False, strict=False)


def save_script(module: torch.jit.ScriptModule, path: str) -> None:
    tmp = path + ".tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 nudges towards torch.export
        torch.jit.save(module, tmp)
    os.replace(tmp, path)


def files_of_manifest(path: str) -> list[str]:
    """The plain file names a bundle manifest lists (nothing outside its folder); [] if unreadable."""
    try:
        with open(path) as fh:
            files = json.load(fh).get("files", {})
        names = [entry["path"] for entry in files.values()]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return []
    return [n for n in names if isinstance(n, str) and n == os.path.basename(n) and n not in ("", ".", "..")]


def save_atomic_bytes(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def file_entry(out: str, name: str) -> dict:
    path = os.path.join(out, name)
    return {"path": name, "sha256": sha256_file(path), "bytes": os.path.getsize(path)}


def tokenize(tokenizer, prompts: list[str], length: int = TEXT_MAX_LENGTH):
    enc = tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    return enc["input_ids"].to(torch.long), enc["attention_mask"].to(torch.long)


TOKENIZER_PROBES = [
    "a cat",
    "the red car on the left",
    "Person, riding a BIKE!!",
    "ünïcödé café 日本語 🐱",
    "it's a dog's toy; isn't it?",
    "  spaces\tand\nnewlines  ",
    "",
    "visual",
    " ".join(["word"] * 60),
]


def check_bundle_tokenizer(tokenizer, tokenizer_json: str) -> None:
    from tokenizers import Tokenizer

    standalone = Tokenizer.from_str(tokenizer_json)
    for prompt in TOKENIZER_PROBES:
        enc = standalone.encode(prompt)
        ref = tokenizer(prompt, padding="max_length", max_length=TEXT_MAX_LENGTH, truncation=True)
        if enc.ids != list(ref["input_ids"]) or enc.attention_mask != list(ref["attention_mask"]):
            raise ExportError(f"bundle tokenizer.json disagrees with the checkpoint's tokenizer on {prompt!r}")


# ------------------------------------------------------------------------------------------- export


def export_bundle(checkpoint: str, out: str, device: str = "cpu", dtype: str = "float32", log=None) -> dict:
    """Exports ``checkpoint`` (folder or hub id) to the bundle folder ``out``; returns the manifest."""
    log = log or (lambda msg: None)
    start = time.time()
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    torch_dtype = DTYPES[dtype]
    dev = parse_device(device)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} exists and is not a folder")

    folder = resolve_checkpoint(checkpoint, log)
    if os.path.realpath(out) == os.path.realpath(folder):
        raise UsageError("--out must not be the checkpoint folder (the bundle's tokenizer.json would replace the checkpoint's)")
    raw_config = read_config(folder)
    prep = preprocessing(folder, model_image_size(raw_config))
    check_weight_files(folder)
    check_tokenizer_files(folder)
    tokenizer = load_tokenizer(folder)
    log(f"loading {checkpoint} ({dtype}, {dev})")
    model, info = load_model(folder, torch_dtype, dev)
    config = model.config
    if model_image_size_of(config) != prep["resolution"]:
        raise CheckpointError(f"the model in {folder} is built for {model_image_size_of(config)}px, its image processor resizes to {prep['resolution']}px")
    unexpected = info.get("unexpected_keys") or []
    log(
        f"loaded {sum(p.numel() for p in model.parameters()):,} parameters in {time.time() - start:.1f} s"
        + (f" ({len(unexpected)} checkpoint tensors not used by Sam3Model, e.g. the video tracker)" if unexpected else "")
    )
    if config.text_config.max_position_embeddings < TEXT_MAX_LENGTH:
        raise CheckpointError(
            f"the text encoder takes {config.text_config.max_position_embeddings} tokens, fewer than the {TEXT_MAX_LENGTH} SAM 3 uses"
        )

    os.makedirs(out, exist_ok=True)
    manifest_path = os.path.join(out, "manifest.json")
    previous_files = []
    if os.path.exists(manifest_path):
        previous_files = files_of_manifest(manifest_path)
        os.remove(manifest_path)  # a half-replaced bundle must not look complete
        log(f"replacing the bundle in {out}")

    resolution = prep["resolution"]
    gen = torch.Generator().manual_seed(0)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device=dev, dtype=torch_dtype)

    with torch.no_grad():
        # ---- vision: the ViT and the detector's neck, traced at batch 2 and checked at batch 1,
        # together against the eager vision encoder.
        t0 = time.time()
        grid = resolution // int(config.vision_config.backbone_config.patch_size)
        backbone = VisionBackbonePiece(model.vision_encoder).eval()
        neck = VisionNeckPiece(model, grid).eval()
        x_trace = randn(2, 3, resolution, resolution)
        log(f"tracing vision_backbone at {resolution}x{resolution}, batch 2")
        traced_backbone = trace(backbone, (x_trace,))
        hidden = traced_backbone(x_trace)[0]
        log("tracing vision_neck")
        traced_neck = trace(neck, (hidden,))
        trace_out = traced_neck(hidden)
        fpn_shapes = [list(t.shape[1:]) for t in trace_out[:3]]
        p2_one = trace_out[3][:1]  # the position encoding does not depend on the image
        del trace_out, x_trace, hidden
        x_check = randn(1, 3, resolution, resolution)
        hidden = traced_backbone(x_check)[0]
        diff = compare("vision_backbone", (hidden,), backbone(x_check), torch_dtype, "batch 1")
        diff = max(diff, compare("vision_neck", traced_neck(hidden), VisionEncoderEager(model)(x_check), torch_dtype, "backbone + neck vs the eager vision encoder, batch 1"))
        backbone_width = int(hidden.shape[-1])
        del x_check, hidden
        save_script(traced_backbone, os.path.join(out, "vision_backbone.pt"))
        save_script(traced_neck, os.path.join(out, "vision_neck.pt"))
        del traced_backbone, traced_neck, backbone, neck
        log(f"vision_backbone + vision_neck: vit {grid}x{grid}x{backbone_width}, fpn {fpn_shapes}, traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

        # ---- text encoder: trace at N=2, L=32; check at N=3, L=32 and N=1, L=16.
        t0 = time.time()
        piece = TextEncoderPiece(model).eval()
        ids, mask = tokenize(tokenizer, ["a photo of a cat", VISUAL_PROMPT])
        ids, mask = ids.to(dev), mask.to(dev)
        log("tracing text_encoder")
        traced = trace(piece, (ids, mask))
        diff = 0.0
        for prompts, length in ((["the red car on the left", "Person, riding a BIKE!!", " ".join(["word"] * 60)], TEXT_MAX_LENGTH), (["dog"], 16)):
            i2, m2 = tokenize(tokenizer, prompts, length)
            i2, m2 = i2.to(dev), m2.to(dev)
            diff = max(diff, compare("text_encoder", traced(i2, m2), piece(i2, m2), torch_dtype, f"N={len(prompts)}, L={length}"))
        hidden = int(piece(ids, mask)[0].shape[-1])
        save_script(traced, os.path.join(out, "text_encoder.pt"))
        text_piece = piece
        del traced
        log(f"text_encoder: hidden {hidden}, traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

        first_block = DetrFirstBlock(model.detr_encoder.layers[0]).eval()

        def head_inputs(prompts: list[str]):
            b = len(prompts)
            feats = tuple(randn(b, *shape) for shape in fpn_shapes)
            p2 = p2_one.expand(b, -1, -1, -1).contiguous()
            e0 = first_block(feats[2], p2)  # what vision_neck hands the heads with the features
            i, m = tokenize(tokenizer, prompts)
            text_features = text_piece(i.to(dev), m.to(dev))[0]
            return feats + (p2, e0, text_features, m.to(dev).bool())

        def boxes(rows: list[list[tuple]]):
            """rows of (cx, cy, w, h, label); label -10 marks padding (box -10,-10,0,0 as the processor pads)."""
            b = torch.tensor([[r[:4] if r[4] != PAD_BOX_LABEL else (-10.0, -10.0, 0.0, 0.0) for r in row] for row in rows])
            lab = torch.tensor([[r[4] for r in row] for row in rows], dtype=torch.long)
            return b.to(device=dev, dtype=torch_dtype), lab.to(dev)

        # ---- pixel decoder: trace with batch-1 skip features under a batch-2 visual (one image,
        # two prompts: how the addon calls it); check against Sam3PixelDecoder.forward itself with
        # the features expanded (B=3), and with per-row features (B=1, and B=2 as the heads' checks do).
        t0 = time.time()
        width = fpn_shapes[2][0]
        pixel = PixelDecoderPiece(model).eval()
        eager_pixel = model.mask_decoder.pixel_decoder
        log("tracing pixel_decoder")
        f0, f1 = randn(1, *fpn_shapes[0]), randn(1, *fpn_shapes[1])
        traced_pixel = trace(pixel, (f0, f1, randn(2, *fpn_shapes[2])))
        diff = 0.0
        for fb, b in ((1, 3), (1, 1), (2, 2)):
            f0, f1, visual = randn(fb, *fpn_shapes[0]), randn(fb, *fpn_shapes[1]), randn(b, *fpn_shapes[2])
            want = eager_pixel([f0.expand(b, -1, -1, -1), f1.expand(b, -1, -1, -1), visual])
            diff = max(diff, compare("pixel_decoder", (traced_pixel(f0, f1, visual),), (want,), torch_dtype, f"features batch {fb}, visual batch {b}"))
        save_script(traced_pixel, os.path.join(out, "pixel_decoder.pt"))
        mask_size = fpn_shapes[0][-1]
        log(f"pixel_decoder: {width} channels, {mask_size}x{mask_size}, traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

        # ---- its split form: pixel_skip once per image, pixel_split per prompt; traced as the addon
        # calls them (batch-1 image, batch-2 visual), checked together against the eager decoder.
        t0 = time.time()
        log("tracing pixel_skip, pixel_split")
        f0, f1 = randn(1, *fpn_shapes[0]), randn(1, *fpn_shapes[1])
        traced_skip = trace(PixelSkipPiece(model).eval(), (f0, f1))
        s0, s1 = traced_skip(f0, f1)
        traced_split = trace(PixelSplitPiece(model).eval(), (s0, s1, randn(2, *fpn_shapes[2])))
        diff = 0.0
        for fb, b in ((1, 3), (1, 1), (2, 2)):
            f0, f1, visual = randn(fb, *fpn_shapes[0]), randn(fb, *fpn_shapes[1]), randn(b, *fpn_shapes[2])
            # the addon hands the neck's channels-last f0/f1 over; check that layout and the plain one
            if fb == 1:
                f0, f1 = (t.contiguous(memory_format=torch.channels_last) for t in (f0, f1))
            want = eager_pixel([f0.expand(b, -1, -1, -1), f1.expand(b, -1, -1, -1), visual])
            s0, s1 = traced_skip(f0, f1)
            what = f"features batch {fb}, visual batch {b}, vs Sam3PixelDecoder"
            diff = max(diff, compare("pixel_split", (traced_split(s0, s1, visual),), (want,), torch_dtype, what))
        save_script(traced_skip, os.path.join(out, "pixel_skip.pt"))
        save_script(traced_split, os.path.join(out, "pixel_split.pt"))
        del traced_skip, traced_split, s0, s1
        log(f"pixel_skip + pixel_split: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

        # ---- head, text only: trace at B=2, check at B=3 and B=1.
        t0 = time.time()
        piece = HeadTextPiece(model).eval()
        eager = HeadEager(model, with_boxes=False).eval()
        log("tracing head_text")
        traced = trace(piece, head_inputs(["a photo of a cat", "the red car on the left"])[2:])
        diff = 0.0
        for prompts in (["dog", VISUAL_PROMPT, " ".join(["word"] * 60)], ["a person"]):
            args = head_inputs(prompts)
            got = traced(*args[2:])
            if tuple(got[5].shape[1:]) != tuple(fpn_shapes[2]):
                raise ExportError(f"head_text's visual output is {list(got[5].shape)}, expected [B, *{fpn_shapes[2]}]")
            diff = max(diff, compare("head_text", with_masks(got, traced_pixel, *args[:2]), eager(*args), torch_dtype, f"B={len(prompts)}, + pixel_decoder, vs the untouched eager head"))
        save_script(traced, os.path.join(out, "head_text.pt"))
        del traced, piece, eager
        log(f"head_text: traced (+ pixel_decoder) vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

        # ---- head, text + boxes: trace at B=2, K=2; check at B=3, K=3 and B=1, K=1.
        t0 = time.time()
        piece = HeadTextBoxesPiece(model).eval()
        eager = HeadEager(model, with_boxes=True).eval()
        log("tracing head_text_boxes")
        bx, lb = boxes([[(0.5, 0.5, 0.3, 0.4, 1), (0, 0, 0, 0, PAD_BOX_LABEL)], [(0.3, 0.6, 0.2, 0.2, 1), (0.7, 0.2, 0.4, 0.3, 0)]])
        traced = trace(piece, head_inputs(["a photo of a cat", VISUAL_PROMPT])[2:] + (bx, lb))
        diff = 0.0
        cases = (
            (
                ["dog", VISUAL_PROMPT, "the red car on the left"],
                [
                    [(0.2, 0.3, 0.1, 0.1, 1), (0.9, 0.9, 0.4, 0.5, 0), (0, 0, 0, 0, PAD_BOX_LABEL)],
                    [(0.5, 0.5, 1.0, 1.0, 1), (0.05, 0.95, 0.2, 0.3, 1), (0.5, 0.4, 0.01, 0.01, 0)],
                    [(0.6, 0.6, 0.3, 0.3, 0), (0, 0, 0, 0, PAD_BOX_LABEL), (0, 0, 0, 0, PAD_BOX_LABEL)],
                ],
            ),
            (["a person"], [[(0.4, 0.45, 0.5, 0.6, 1)]]),
        )
        for prompts, rows in cases:
            bx, lb = boxes(rows)
            args = head_inputs(prompts) + (bx, lb)
            got = with_masks(traced(*args[2:]), traced_pixel, *args[:2])
            diff = max(diff, compare("head_text_boxes", got, eager(*args), torch_dtype, f"B={len(prompts)}, K={len(rows[0])}, + pixel_decoder, vs the untouched eager head"))
        save_script(traced, os.path.join(out, "head_text_boxes.pt"))
        del traced, piece, eager, text_piece, first_block, traced_pixel, pixel
        log(f"head_text_boxes: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

    # ---- the video tracker (sam3_video checkpoints, like facebook/sam3).
    video = None
    if has_tracker(raw_config):
        fingerprint = backbone_fingerprint(model.vision_encoder.backbone)
        del model  # the tracker loads its own copy of the ViT; free the detector first
        log("exporting the video tracker")
        video = export_tracker(folder, out, dev, torch_dtype, resolution, log, trace, compare, save_script, fingerprint)
    else:
        log("no video tracker in this checkpoint (model_type sam3): the bundle serves images only")

    # ---- tokenizer.json with truncation + fixed padding built in.
    tokenizer_json = bundle_tokenizer_json(tokenizer, TEXT_MAX_LENGTH)
    check_bundle_tokenizer(tokenizer, tokenizer_json)
    save_atomic_bytes(os.path.join(out, "tokenizer.json"), tokenizer_json.encode("utf-8"))

    import transformers

    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "source": {
            "checkpoint": checkpoint,
            "model_type": "sam3",
            "checkpoint_model_type": raw_config["model_type"],
            "config_sha256": sha256_file(os.path.join(folder, "config.json")),
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "exporter": EXPORTER_VERSION,
        },
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(dev),
        "dtype": dtype,
        "resolution": resolution,
        "patch_size": int(config.vision_config.backbone_config.patch_size),
        "vit": {"grid": grid, "hidden_size": backbone_width},
        "mask_size": mask_size,
        "num_queries": int(config.detr_decoder_config.num_queries),
        "hidden_size": hidden,
        "text": {"max_length": TEXT_MAX_LENGTH, "pad_token_id": int(tokenizer.pad_token_id), "visual_prompt": VISUAL_PROMPT},
        "normalization": {"mean": prep["mean"], "std": prep["std"]},
        "fpn_shapes": fpn_shapes,
        "files": {
            "vision_backbone": file_entry(out, "vision_backbone.pt"),
            "vision_neck": file_entry(out, "vision_neck.pt"),
            "text_encoder": file_entry(out, "text_encoder.pt"),
            "head_text": file_entry(out, "head_text.pt"),
            "head_text_boxes": file_entry(out, "head_text_boxes.pt"),
            "pixel_decoder": file_entry(out, "pixel_decoder.pt"),
            "pixel_skip": file_entry(out, "pixel_skip.pt"),
            "pixel_split": file_entry(out, "pixel_split.pt"),
            "tokenizer": file_entry(out, "tokenizer.json"),
        },
        "signatures": {
            "vision_backbone": "(pixel_values[B,3,R,R] dtype) -> (hidden[B,g*g,V],)",
            "vision_neck": "(hidden[B,g*g,V]) -> (f0, f1, f2, p2, e0[B,h*w,D]: the first DETR encoder layer's self-attention block)",
            "text_encoder": "(input_ids int64[N,L], attention_mask int64[N,L]) -> (text_features[N,L,D],)",
            "head_text": "(f2, p2, e0, text_features[B,L,D], text_mask bool[B,L]) -> (pred_logits[B,Q], pred_boxes[B,Q,4] xyxy, presence_logits[B,1], mask_embeddings[B,Q,C], mask_bias[B,Q], visual[B,C,h,w])",
            "head_text_boxes": "(f2, p2, e0, text_features[B,L,D], text_mask bool[B,L], input_boxes[B,K,4] cxcywh, input_boxes_labels int64[B,K] 1/0/-10 pad) -> (pred_logits, pred_boxes, presence_logits, mask_embeddings, mask_bias, visual)",
            "pixel_decoder": "(f0[1|B,C,M,M], f1[1|B,C,M/2,M/2], visual[B,C,h,w]) -> (pixel_embeddings[B,C,M,M],); pred_masks[b,q] = mask_embeddings[b,q] . pixel_embeddings[b] + mask_bias[b,q]",
            "pixel_skip": "(f0[B,C,M,M], f1[B,C,M/2,M/2]) -> (s0, s1): the pixel decoder's convolutions of its skip inputs, once per image",
            "pixel_split": "(s0[1|B,C,M,M], s1[1|B,C,M/2,M/2], visual[B,C,h,w]) -> (pixel_embeddings[B,C,M,M],): pixel_decoder from pixel_skip's outputs",
        },
    }
    if video is not None:
        manifest["video"] = video
        for name in TRACKER_FILES:
            manifest["files"][name] = file_entry(out, f"{name}.pt")
    # Written last and atomically: a bundle with a manifest is complete.
    save_atomic_bytes(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    # Pieces of the bundle this one replaced that it no longer has (an older format's
    # vision_encoder.pt, say: 1.8 GB at full size). Only files the old manifest listed.
    kept = {entry["path"] for entry in manifest["files"].values()}
    for rel in previous_files:
        if rel not in kept and os.path.isfile(os.path.join(out, rel)):
            os.remove(os.path.join(out, rel))
            log(f"removed {rel}, a piece of the replaced bundle this one does not use")
    log(f"bundle written to {out} in {time.time() - start:.1f} s")
    return manifest
