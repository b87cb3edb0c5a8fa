"""The image side's traced pieces (signatures: manifest.SIGNATURES).

* vision_backbone.pt (pixel_values [B,3,R,R] bundle dtype) -> (hidden [B,g*g,V],): the ViT,
  ``vision_encoder.backbone(pixel_values).last_hidden_state``. It is its own piece because the video
  tracker's neck reads the same ViT output: one copy of the ViT weights serves both, and a frame
  that both the detector and the tracker need runs the ViT once.
* vision_neck.pt     (hidden [B,g*g,V]) -> (f0, f1, f2, p2, e0): the detector's FPN neck,
  ``vision_encoder(pixel_values).fpn_hidden_states[:-1]`` and ``.fpn_position_encoding[2]`` (the
  only position encoding Sam3Model reads) from the ViT output on (``Sam3VisionModel.forward`` after
  its backbone call), plus e0 [B,h*w,D]: the first DETR encoder layer's self-attention block over
  f2's tokens. That block reads only the image (the prompt enters at the layer's cross-attention),
  so it is computed once per image here and kept with the features instead of once per prompt in
  the head (detr_parts.py). The 4x and 2x FPN levels run in their sub-pixel form (subpixel.py: the
  same linear map with far fewer FLOPs) and the 0.5x level, which Sam3Model drops, is not computed.
"""
from __future__ import annotations

import torch
from torch import nn

from .detr_parts import DetrFirstBlock, detr_first_block
from .subpixel import fast_fpn_level


class VisionBackbonePiece(nn.Module):
    def __init__(self, vision_encoder):
        super().__init__()
        self.backbone = vision_encoder.backbone

    def forward(self, pixel_values):
        return (self.backbone(pixel_values).last_hidden_state,)


def spatial(hidden: torch.Tensor, grid: int) -> torch.Tensor:
    """[B, g*g, V] -> [B, V, g, g], as ``Sam3VisionModel.forward`` hands the ViT output to its neck."""
    return hidden.view(hidden.shape[0], grid, grid, -1).permute(0, 3, 1, 2)


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
