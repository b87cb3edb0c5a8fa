"""The pixel decoder's traced pieces.

* pixel_decoder.pt (f0 [1 or B,C,4h,4w], f1 [1 or B,C,2h,2w], visual [B,C,h,w]) -> (pixel_embeddings
  [B,C,M,M],): ``Sam3PixelDecoder``. The mask logits are pred_masks[b,q] = mask_embeddings[b,q] .
  pixel_embeddings[b] + mask_bias[b,q]. It is its own piece because on the detector's path it is
  the largest single cost per prompt (a 3x3 convolution at the mask resolution), and its output is
  read only for the queries that pass the score threshold: the addon runs it only for prompts that
  found something. A batch-1 f0/f1 broadcasts over the prompts of one image.
* pixel_skip.pt (f0, f1) -> (s0, s1) and pixel_split.pt (s0 [1 or B], s1 [1 or B], visual [B,C,h,w])
  -> (pixel_embeddings,): the same decoder split at its linearity (PixelSkipPiece). s0/s1 read only
  the image: once an image has had a few prompts that found something, the addon computes them
  once, keeps them in place of f0/f1, and every further prompt runs pixel_split, whose convolutions
  run at the low resolution (~35% less time than pixel_decoder a prompt on a CPU).
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import ExportError
from .subpixel import NearestUpConvAdd


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
