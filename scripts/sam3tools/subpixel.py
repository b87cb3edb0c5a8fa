"""Exact, cheaper forms of SAM 3's FPN up-sampling branches (build-time tool; bundle format 4).

A ``Sam3FPNLayer`` with scale factor 2 or 4 ends in a transposed convolution (kernel 2, stride 2),
a 1x1 convolution ``proj1`` and a 3x3 convolution ``proj2`` (padding 1), with nothing non-linear
between them; the tracker's neck adds a 1x1 ``conv_s0`` / ``conv_s1`` after ``proj2``. The transposed
convolution writes each input pixel (i, j) into the four output pixels (2i+a, 2j+b) through its own
matrix per phase (a, b), so after ``proj1`` the up-sampled map is

    z[2i+a, 2j+b] = M[a][b] @ x[i, j] + c.

A 3x3 convolution over z, looked at one output phase at a time, reads a 2x2 window of x (rows i-1..i
for a = 0, i..i+1 for a = 1; columns alike). So the whole chain is, per phase, a 2x2 convolution of
x at the LOW resolution, whose kernel is the sum of ``proj2``'s taps times the phase matrices. One
convolution with 4 * Co outputs computes all four phases; they are then interleaved. At the 4x
level of facebook/sam3 this replaces ~98 GFLOP (the 3x3 at 288x288 with 256 channels, plus the
transposed and 1x1 convolutions there) with ~43 GFLOP, and for the tracker, whose ``conv_s0``
keeps only 32 of those 256 channels, with ~5 GFLOP.

The bias c must not leak into the zero padding of z: x gets an extra channel of ones, which the
padding of x zeroes exactly where z's padding is (z row -1 or 2H <=> x row -1 or H).

The weights are combined in float64 and rounded once to the model's dtype; the result equals the
eager chain up to float rounding (the exporter checks it against eager like every piece).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# For output row phase a of a 3x3 convolution (padding 1) over a 2x up-sampled map: for each tap
# dr = 0, 1, 2 (rows 2i+a-1, 2i+a, 2i+a+1), the row of the 2-row window of x it reads and the phase
# of that up-sampled row. Window rows: i-1, i for a = 0; i, i+1 for a = 1. The same holds for columns.
TAPS = {0: ((0, 1), (1, 0), (1, 1)), 1: ((0, 0), (0, 1), (1, 0))}


def compose_kernel(w3: torch.Tensor, b3: torch.Tensor | None, maps, shift: torch.Tensor, post: nn.Conv2d | None = None):
    """The per-phase 2x2 kernels of ``post(conv3x3(z))`` with z[2i+a, 2j+b] = maps[a][b] @ x[i, j] + shift.

    w3 [Cm, Cz, 3, 3], b3 [Cm]; maps[a][b] [Cz, Ci]; shift [Cz]; post an optional 1x1 convolution
    [Co, Cm]. Returns (kernel [4*Co, Ci+1, 2, 2], bias [Co]) in float64; output channel co*4 + a*2 + b
    is phase (a, b) of channel co, and input channel Ci is the ones channel that carries ``shift``."""
    w = w3.detach().double()
    bias = b3.detach().double() if b3 is not None else torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    if post is not None:
        p = post.weight.detach().double()[:, :, 0, 0]
        w = torch.einsum("om,mzhw->ozhw", p, w)
        bias = p @ bias + (post.bias.detach().double() if post.bias is not None else 0.0)
    co = w.shape[0]
    ci = maps[0][0].shape[1]
    shift = shift.double()
    k = torch.zeros(co, 2, 2, ci + 1, 2, 2, dtype=torch.float64, device=w.device)
    for a in (0, 1):
        for b in (0, 1):
            for dr in range(3):
                wr, pr = TAPS[a][dr]
                for dc in range(3):
                    wc, pc = TAPS[b][dc]
                    tap = w[:, :, dr, dc]
                    k[:, a, b, :ci, wr, wc] += tap @ maps[pr][pc].double()
                    k[:, a, b, ci, wr, wc] += tap @ shift
    return k.reshape(co * 4, ci + 1, 2, 2), bias


class SubpixelConv(nn.Module):
    """x [B, Ci, H, W] -> [B, Co, 2H, 2W]: the composed chain (see the module docstring).

    channels_last: the result is laid out channels-last (the same values; a [B, Co, 2H, 2W] view of
    a [B, 2H, 2W, Co] tensor), which the interleave writes at least as fast and which convolutions
    that read it (the pixel decoder's) run faster on a CPU."""

    def __init__(self, kernel: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype, channels_last: bool = False):
        super().__init__()
        self.kernel = nn.Parameter(kernel.to(dtype), requires_grad=False)
        self.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
        self.channels_last = channels_last

    def forward(self, x):
        bsz, _, h, w = x.shape
        co = self.bias.shape[0]
        x = torch.cat([x, torch.ones_like(x[:, :1])], 1)
        y = F.conv2d(F.pad(x, (1, 1, 1, 1)), self.kernel).view(bsz, co, 2, 2, h + 1, w + 1)
        # Phase (a, b) at (i, j) is y[:, :, a, b, i + a, j + b]; write each phase once into its place.
        if self.channels_last:
            out = torch.empty(bsz, h, 2, w, 2, co, dtype=y.dtype, device=y.device)
            for a in (0, 1):
                for b in (0, 1):
                    out[:, :, a, :, b, :] = y[:, :, a, b, a : a + h, b : b + w].permute(0, 2, 3, 1)
            return (out.view(bsz, 2 * h, 2 * w, co) + self.bias).permute(0, 3, 1, 2)
        out = torch.empty(bsz, co, h, 2, w, 2, dtype=y.dtype, device=y.device)
        for a in (0, 1):
            for b in (0, 1):
                out[:, :, :, a, :, b] = y[:, :, a, b, a : a + h, b : b + w]
        return out.view(bsz, co, 2 * h, 2 * w) + self.bias.view(1, -1, 1, 1)


class ComposedFPNLevel(nn.Module):
    """A ``Sam3FPNLayer`` with scale factor 2 or 4 (optionally followed by a 1x1 convolution ``post``):
    its layers before the last transposed convolution run as they are, the rest as one SubpixelConv."""

    def __init__(self, layer: nn.Module, post: nn.Conv2d | None = None, channels_last: bool = False):
        super().__init__()
        layers = list(layer.scale_layers)
        up = layers[-1]
        if not (
            isinstance(up, nn.ConvTranspose2d)
            and tuple(up.kernel_size) == (2, 2)
            and tuple(up.stride) == (2, 2)
            and tuple(up.padding) == (0, 0)
            and tuple(up.output_padding) == (0, 0)
            and up.groups == 1
            and tuple(layer.proj1.kernel_size) == (1, 1)
            and tuple(layer.proj2.kernel_size) == (3, 3)
            and tuple(layer.proj2.padding) == (1, 1)
            and tuple(layer.proj2.stride) == (1, 1)
            and tuple(layer.proj2.dilation) == (1, 1)
        ):
            raise ValueError("this FPN level is not transposed conv 2x2/2 -> 1x1 -> 3x3; it cannot be composed")
        self.pre = nn.ModuleList(layers[:-1])
        self.dtype = layer.proj1.weight.dtype
        p1 = layer.proj1.weight.detach().double()[:, :, 0, 0]  # [Cz, Cu]
        t = up.weight.detach().double()  # [Ci, Cu, 2, 2]
        maps = [[p1 @ t[:, :, a, b].T for b in (0, 1)] for a in (0, 1)]
        shift = p1 @ (up.bias.detach().double() if up.bias is not None else torch.zeros(t.shape[1], dtype=torch.float64, device=t.device))
        if layer.proj1.bias is not None:
            shift = shift + layer.proj1.bias.detach().double()
        kernel, bias = compose_kernel(layer.proj2.weight, layer.proj2.bias, maps, shift, post)
        self.sub = SubpixelConv(kernel, bias, self.dtype, channels_last)

    def forward(self, x):
        x = x.to(self.dtype)
        for m in self.pre:
            x = m(x)
        return self.sub(x)


class PlainFPNLevel(nn.Module):
    """An FPN level run as transformers runs it (then ``post``, if any): for levels that are not
    transposed conv -> 1x1 -> 3x3 (scale 1 and 0.5, or a checkpoint built otherwise)."""

    def __init__(self, layer: nn.Module, post: nn.Conv2d | None = None):
        super().__init__()
        self.layer = layer
        self.post = post

    def forward(self, x):
        x = self.layer(x)
        return self.post(x) if self.post is not None else x


def fast_fpn_level(layer: nn.Module, post: nn.Conv2d | None = None, channels_last: bool = False) -> nn.Module:
    """``post(layer(x))`` in its sub-pixel form where the level has one, else as it is
    (channels_last: see SubpixelConv; a plain level keeps transformers' layout)."""
    try:
        return ComposedFPNLevel(layer, post, channels_last)
    except (ValueError, AttributeError, IndexError):
        return PlainFPNLevel(layer, post)


def nearest_up_conv_kernel(w3: torch.Tensor) -> torch.Tensor:
    """The per-phase 2x2 kernels of a 3x3 convolution (padding 1, no bias) over a map up-sampled 2x
    by nearest neighbour: z[2i+a, 2j+b] = x[i, j], so each phase reads a 2x2 window of x (TAPS) and
    its kernel is the sum of the 3x3 taps that land on the same pixel of x.

    w3 [Co, Ci, 3, 3] -> [4*Co, Ci, 2, 2], phase-major: output channel (a*2 + b)*Co + co is phase
    (a, b) of channel co, so that in a channels-last result each phase is a contiguous run of Co.
    Summed in float64, rounded once to w3's dtype."""
    w = w3.detach().double()
    co, ci = w.shape[:2]
    k = torch.zeros(2, 2, co, ci, 2, 2, dtype=torch.float64, device=w.device)
    for a in (0, 1):
        for b in (0, 1):
            for dr in range(3):
                wr, _ = TAPS[a][dr]
                for dc in range(3):
                    wc, _ = TAPS[b][dc]
                    k[a, b, :, :, wr, wc] += w[:, :, dr, dc]
    return k.reshape(4 * co, ci, 2, 2).to(w3.dtype)


class NearestUpConvAdd(nn.Module):
    """(x [B,C,h,w], skip [1 or B,Co,2h,2w]) -> conv3x3(up2_nearest(x)) + skip, [B,Co,2h,2w] laid out
    channels-last: the 3x3 convolution run at the low resolution as one 2x2 convolution with 4*Co
    outputs (nearest_up_conv_kernel: 16 multiply-adds per output pixel and channel pair where the
    up-sampled 3x3 takes 36 per low-resolution pixel), each phase added to the skip map as it is
    interleaved into place. A 2x2 convolution with padding 1 over [h, w] gives [h+1, w+1]; phase
    (a, b) at (i, j) is its pixel (i+a, j+b)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not (
            tuple(conv.kernel_size) == (3, 3)
            and tuple(conv.padding) == (1, 1)
            and tuple(conv.stride) == (1, 1)
            and tuple(conv.dilation) == (1, 1)
            and conv.groups == 1
        ):
            raise ValueError("not a plain 3x3 convolution with padding 1")
        self.kernel = nn.Parameter(nearest_up_conv_kernel(conv.weight), requires_grad=False)

    def forward(self, x, skip):
        bsz, _, h, w = x.shape
        co = self.kernel.shape[0] // 4
        x = x.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x, self.kernel, padding=1)  # [B,4Co,h+1,w+1], channels-last like x
        y = y.permute(0, 2, 3, 1).reshape(bsz, h + 1, w + 1, 2, 2, co)
        sk = skip.permute(0, 2, 3, 1).reshape(skip.shape[0], h, 2, w, 2, co)
        out = torch.empty(bsz, h, 2, w, 2, co, dtype=y.dtype, device=y.device)
        for a in (0, 1):
            for b in (0, 1):
                torch.add(y[:, a : a + h, b : b + w, a, b], sk[:, :, a, :, b, :], out=out[:, :, a, :, b, :])
        return out.view(bsz, 2 * h, 2 * w, co).permute(0, 3, 1, 2)
