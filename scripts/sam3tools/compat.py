"""Pure-torch replacement for ``torchvision.ops.roi_align`` so that transformers' SAM 3 runs without
torchvision (no CPU build of torchvision exists for torch 2.13 here) and traces into TorchScript that
libtorch alone can run (no torchvision custom ops in the exported graph).

transformers' ``modeling_sam3`` only calls ``torchvision.ops.roi_align(input, boxes_list, output_size)``
(box exemplars -> pooled features in ``Sam3GeometryEncoder._encode_boxes``).
``install_roi_align_shim()`` points the module's ``torchvision`` name at a namespace holding ours.

Two implementations:

* ``roi_align_loop``: a direct, slow port of torchvision's CPU kernel (one roi, one bin, one sample at
  a time, float32 arithmetic). It is the reference for the check below; never traced.
* ``roi_align``: vectorised and traceable. Bilinear interpolation is separable: a sample's value is
  ``sum_r sum_c wy(y, r) * wx(x, c) * V[r, c]`` (torchvision's "outside -> 0" rule is also a product of
  a y test and an x test), so a bin's average over its ``gh x gw`` sample grid is
  ``(Ay @ V @ Ax^T) / (gh * gw)`` where ``Ay[ph, r]`` sums the y-weights of the bin's ``gh`` sample rows.
  The adaptive grid size depends on the roi (a tensor value), so each bin enumerates a FIXED number of
  candidate sample rows and masks those past the roi's grid. Samples more than 1 pixel outside the map
  weigh nothing, and for a grid of 2 or more samples per bin the sample spacing is at least half a
  pixel, so at most ``2 * (H + 1) + 1`` samples of a bin can ever weigh anything: each bin's window
  starts at its first sample that can be inside the map and holds ``2 * H + 6`` candidates. The result
  is exact for boxes of any size (tiny, huge, partly or wholly outside, degenerate) with shapes that
  depend only on the feature map size, which a trace bakes in anyway.

Run ``python -m sam3tools.compat --check`` (from scripts/) to compare both on random inputs.
"""
from __future__ import annotations

import math
import sys
import types
from typing import Sequence

import torch
from torch import Tensor

__all__ = ["roi_align", "roi_align_loop", "install_roi_align_shim", "check"]


def _pair(output_size) -> tuple[int, int]:
    if isinstance(output_size, int):
        return output_size, output_size
    h, w = output_size
    return int(h), int(w)


def _same_shape_boxes(boxes: Sequence[Tensor]) -> bool:
    return len(boxes) > 0 and all(b.dim() == 2 and b.shape == boxes[0].shape for b in boxes)


def _batched_boxes(boxes: Sequence[Tensor]) -> Tensor:
    """[B, K, 4] from a list of B [K, 4] tensors.

    transformers passes ``boxes_xyxy.unbind(0)``. Under ``torch.jit.trace`` a Python list of B tensors
    bakes B into the graph (``ListUnpack`` of exactly B outputs), so when the list is exactly the
    unbind of one tensor we use that tensor (the views' common ``_base``) and the trace keeps a
    dynamic batch size. Anything else is stacked.
    """
    first = boxes[0]
    base = first._base
    if (
        base is not None
        and base.dim() == 3
        and base.shape[0] == len(boxes)
        and tuple(base.shape[1:]) == tuple(first.shape)
        and base.dtype == first.dtype
    ):
        step = base.stride(0) * base.element_size()
        if all(
            b._base is base and b.stride() == base.stride()[1:] and b.data_ptr() == base.data_ptr() + i * step
            for i, b in enumerate(boxes)
        ):
            return base
    return torch.stack(list(boxes), 0)


def _axis_weights(
    start: Tensor, bin_size: Tensor, grid: Tensor, pooled: int, length: int, fixed_grid: int
) -> Tensor:
    """Per-roi interpolation weights along one axis, summed over each bin's samples: [N, pooled, length].

    start, bin_size, grid: [N] float32 (grid holds whole numbers, possibly <= 0 for empty rois).
    fixed_grid > 0 means sampling_ratio > 0: exactly that many samples per bin, no window needed.
    """
    dev = start.device
    p = torch.arange(pooled, device=dev, dtype=torch.float32)
    # torchvision: y = roi_start + ph * bin_size + (iy + .5f) * bin_size / grid, evaluated left to right.
    bin_start = start[:, None] + p[None, :] * bin_size[:, None]  # [N, P]
    if fixed_grid > 0:
        candidates = fixed_grid
        first = torch.zeros_like(bin_start)
    else:
        candidates = 2 * length + 6
        step = bin_size[:, None] / grid.clamp(min=1.0)[:, None]
        # First sample index whose coordinate can be >= -1, one less for safety (float rounding).
        t = (-1.0 - bin_start) / step - 0.5
        t = torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
        first = (torch.floor(t) - 1.0).clamp(min=0.0)
    k = torch.arange(candidates, device=dev, dtype=torch.float32)
    idx = first[:, :, None] + k  # [N, P, K] sample index within the bin
    y = bin_start[:, :, None] + (idx + 0.5) * bin_size[:, None, None] / grid[:, None, None]
    valid = (idx < grid[:, None, None]) & (y >= -1.0) & (y <= float(length))
    y = y.clamp(min=0.0)
    low = torch.floor(y)
    at_end = low >= float(length - 1)
    last = torch.full_like(low, float(length - 1))
    low = torch.where(at_end, last, low)
    high = torch.where(at_end, last, low + 1.0)
    y = torch.where(at_end, low, y)
    frac = y - low
    w_low = torch.where(valid, 1.0 - frac, torch.zeros_like(frac))
    w_high = torch.where(valid, frac, torch.zeros_like(frac))
    positions = torch.arange(length, device=dev, dtype=torch.float32)
    # Rows a sample may touch: one-hot [N, P, K, L]; invalid samples have zero weights.
    onehot_low = (low[..., None] == positions).to(torch.float32)
    onehot_high = (high[..., None] == positions).to(torch.float32)
    return (w_low[..., None] * onehot_low + w_high[..., None] * onehot_high).sum(dim=2)


def roi_align(
    input: Tensor,
    boxes,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Drop-in for ``torchvision.ops.roi_align`` (same arguments and result), vectorised and traceable.

    input: [B, C, H, W]; boxes: list of B [K_i, 4] xyxy tensors in input coordinates (before
    ``spatial_scale``) or one [K, 5] tensor (batch index, x1, y1, x2, y2). Returns [sum K_i, C, ph, pw]
    in input's dtype (bfloat16/float16 are computed in float32 and cast back).
    """
    pooled_h, pooled_w = _pair(output_size)
    out_dtype = input.dtype
    feats = input.to(torch.float32)
    _, channels, height, width = feats.shape
    grouped = None
    if isinstance(boxes, Tensor):
        rois = boxes.to(torch.float32)
        batch_index = rois[:, 0].to(torch.long)
        coords = rois[:, 1:5]
    elif _same_shape_boxes(boxes):
        grouped = _batched_boxes(boxes).to(torch.float32)  # [B, K, 4]
        coords = grouped.reshape(-1, 4)
        batch_index = None
    else:
        coords = torch.cat([b.to(torch.float32) for b in boxes], 0)
        batch_index = torch.cat(
            [torch.full((b.shape[0],), i, dtype=torch.long, device=b.device) for i, b in enumerate(boxes)]
        )

    offset = 0.5 if aligned else 0.0
    x1 = coords[:, 0] * spatial_scale - offset
    y1 = coords[:, 1] * spatial_scale - offset
    roi_w = coords[:, 2] * spatial_scale - offset - x1
    roi_h = coords[:, 3] * spatial_scale - offset - y1
    if not aligned:
        roi_w = roi_w.clamp(min=1.0)
        roi_h = roi_h.clamp(min=1.0)
    bin_h = roi_h / pooled_h
    bin_w = roi_w / pooled_w
    if sampling_ratio > 0:
        grid_h = torch.full_like(roi_h, float(sampling_ratio))
        grid_w = torch.full_like(roi_w, float(sampling_ratio))
    else:
        grid_h = torch.ceil(roi_h / pooled_h)
        grid_w = torch.ceil(roi_w / pooled_w)
    count = (grid_h * grid_w).clamp(min=1.0)

    fixed = sampling_ratio if sampling_ratio > 0 else 0
    ay = _axis_weights(y1, bin_h, grid_h, pooled_h, height, fixed)  # [N, ph, H]
    ax = _axis_weights(x1, bin_w, grid_w, pooled_w, width, fixed)  # [N, pw, W]
    ay = ay / count[:, None, None]

    if grouped is not None:
        nb, nk = grouped.shape[0], grouped.shape[1]
        ay = ay.reshape(nb, nk, pooled_h, height)
        ax = ax.reshape(nb, nk, pooled_w, width)
        rows = torch.einsum("bkpr,bcrw->bkcpw", ay, feats)
        out = torch.einsum("bkcpw,bkqw->bkcpq", rows, ax)
        out = out.reshape(nb * nk, channels, pooled_h, pooled_w)
    else:
        per_roi = feats[batch_index]  # [N, C, H, W]
        rows = torch.einsum("npr,ncrw->ncpw", ay, per_roi)
        out = torch.einsum("ncpw,nqw->ncpq", rows, ax)
    return out.to(out_dtype)


def _rois_as_list(boxes) -> list[tuple[int, list[float]]]:
    if isinstance(boxes, Tensor):
        return [(int(r[0]), [float(v) for v in r[1:5]]) for r in boxes.detach().float().cpu()]
    out = []
    for i, b in enumerate(boxes):
        for r in b.detach().float().cpu():
            out.append((i, [float(v) for v in r]))
    return out


def roi_align_loop(
    input: Tensor,
    boxes,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Slow, literal port of torchvision's CPU ``roi_align`` forward (float32 arithmetic, per sample)."""
    import numpy as np

    f32 = np.float32
    pooled_h, pooled_w = _pair(output_size)
    feats = input.detach().to(torch.float32).cpu().numpy()
    _, channels, height, width = feats.shape
    rois = _rois_as_list(boxes)
    out = np.zeros((len(rois), channels, pooled_h, pooled_w), dtype=np.float32)
    offset = f32(0.5) if aligned else f32(0.0)
    scale = f32(spatial_scale)

    def bilinear(plane, y, x):
        # torchvision's bilinear_interpolate (pre_calc in the CPU kernel).
        if y < -1.0 or y > height or x < -1.0 or x > width:
            return None
        if y <= 0:
            y = f32(0.0)
        if x <= 0:
            x = f32(0.0)
        y_low, x_low = int(y), int(x)
        if y_low >= height - 1:
            y_high = y_low = height - 1
            y = f32(y_low)
        else:
            y_high = y_low + 1
        if x_low >= width - 1:
            x_high = x_low = width - 1
            x = f32(x_low)
        else:
            x_high = x_low + 1
        ly, lx = f32(y - y_low), f32(x - x_low)
        hy, hx = f32(1.0) - ly, f32(1.0) - lx
        w1, w2, w3, w4 = hy * hx, hy * lx, ly * hx, ly * lx
        return (
            w1 * plane[:, y_low, x_low]
            + w2 * plane[:, y_low, x_high]
            + w3 * plane[:, y_high, x_low]
            + w4 * plane[:, y_high, x_high]
        )

    for n, (b, (bx1, by1, bx2, by2)) in enumerate(rois):
        plane = feats[b]
        roi_start_w = f32(bx1) * scale - offset
        roi_start_h = f32(by1) * scale - offset
        roi_end_w = f32(bx2) * scale - offset
        roi_end_h = f32(by2) * scale - offset
        roi_w = f32(roi_end_w - roi_start_w)
        roi_h = f32(roi_end_h - roi_start_h)
        if not aligned:
            roi_w = max(roi_w, f32(1.0))
            roi_h = max(roi_h, f32(1.0))
        bin_h = f32(roi_h / f32(pooled_h))
        bin_w = f32(roi_w / f32(pooled_w))
        grid_h = sampling_ratio if sampling_ratio > 0 else int(math.ceil(f32(roi_h / f32(pooled_h))))
        grid_w = sampling_ratio if sampling_ratio > 0 else int(math.ceil(f32(roi_w / f32(pooled_w))))
        count = max(grid_h * grid_w, 1)
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                acc = np.zeros(channels, dtype=np.float32)
                for iy in range(grid_h):
                    y = f32(roi_start_h + f32(ph) * bin_h) + f32(f32(iy + 0.5) * bin_h) / f32(grid_h)
                    for ix in range(grid_w):
                        x = f32(roi_start_w + f32(pw) * bin_w) + f32(f32(ix + 0.5) * bin_w) / f32(grid_w)
                        v = bilinear(plane, f32(y), f32(x))
                        if v is not None:
                            acc += v.astype(np.float32)
                out[n, :, ph, pw] = acc / f32(count)
    return torch.from_numpy(out).to(input.dtype)


def install_roi_align_shim() -> None:
    """Make transformers' SAM 3 use our roi_align (idempotent). Call before building or running a model."""
    from transformers.models.sam3 import modeling_sam3

    ops = types.SimpleNamespace(roi_align=roi_align)
    modeling_sam3.torchvision = types.SimpleNamespace(ops=ops, __sam3tools_shim__=True)


# --------------------------------------------------------------------------------------------- check


def _random_boxes(gen: torch.Generator, n: int, height: int, width: int) -> Tensor:
    """xyxy boxes in feature-map pixels: ordinary, tiny, huge, partly/wholly outside, degenerate."""
    kinds = torch.randint(0, 7, (n,), generator=gen)
    out = []
    for kind in kinds.tolist():
        r = torch.rand(4, generator=gen)
        if kind == 0:  # ordinary, inside
            x1, y1 = r[0] * width * 0.8, r[1] * height * 0.8
            x2, y2 = x1 + r[2] * (width - x1), y1 + r[3] * (height - y1)
        elif kind == 1:  # tiny (well under a pixel)
            x1, y1 = r[0] * width, r[1] * height
            x2, y2 = x1 + r[2] * 0.3, y1 + r[3] * 0.3
        elif kind == 2:  # huge: up to 4x the map in each direction
            x1, y1 = -r[0] * 2 * width, -r[1] * 2 * height
            x2, y2 = width + r[2] * 2 * width, height + r[3] * 2 * height
        elif kind == 3:  # partly outside
            x1, y1 = (r[0] - 0.5) * width, (r[1] - 0.5) * height
            x2, y2 = x1 + r[2] * width, y1 + r[3] * height
        elif kind == 4:  # wholly outside
            x1, y1 = width + 1.5 + r[0] * 5, -10 - r[1] * 5
            x2, y2 = x1 + r[2] * 4, y1 + r[3] * 4
        elif kind == 5:  # degenerate: inverted or zero size, a point, exactly on the border
            x1, y1 = r[0] * width, r[1] * height
            choice = int(r[2] * 4)
            if choice == 0:
                x2, y2 = x1 - r[3] * 3, y1 - r[3] * 3
            elif choice == 1:
                x2, y2 = x1, y1
            elif choice == 2:
                x1, y1, x2, y2 = torch.tensor(0.0), torch.tensor(0.0), torch.tensor(float(width)), torch.tensor(float(height))
            else:
                x1, y1 = torch.tensor(float(width - 1)), torch.tensor(float(height - 1))
                x2, y2 = torch.tensor(float(width)), torch.tensor(float(height))
        else:  # integer-aligned corners (samples land exactly on pixel centres and edges)
            x1, y1 = torch.floor(r[0] * width), torch.floor(r[1] * height)
            x2, y2 = x1 + torch.ceil(r[2] * 8), y1 + torch.ceil(r[3] * 8)
        out.append(torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in (x1, y1, x2, y2)]))
    return torch.stack(out)


def check(verbose: bool = True, seed: int = 0) -> float:
    """Compare roi_align with roi_align_loop; returns the worst absolute difference seen.

    Raises AssertionError when a difference exceeds 1e-5 or the traced function does not generalise.
    """
    tol = 1e-5
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0

    def log(msg: str) -> None:
        if verbose:
            print(msg, file=sys.stderr)

    configs = [
        # (batch, channels, H, W, boxes per image, output_size, spatial_scale, sampling_ratio, aligned)
        (2, 3, 13, 17, 40, 7, 1.0, -1, False),
        (1, 2, 9, 9, 40, (3, 5), 1.0, -1, False),
        (2, 2, 11, 7, 25, 7, 0.5, -1, False),
        (1, 2, 10, 12, 25, 4, 1.0, 2, False),
        (2, 2, 8, 13, 25, 7, 1.0, -1, True),
        (1, 4, 36, 36, 10, 7, 1.0, -1, False),
        (1, 1, 1, 5, 10, 3, 1.0, -1, False),
    ]
    for b, c, h, w, k, size, scale, ratio, aligned in configs:
        feats = torch.randn(b, c, h, w, generator=gen)
        boxes = [_random_boxes(gen, k, int(h / scale), int(w / scale)) for _ in range(b)]
        args = (size, scale, ratio, aligned)
        ref = roi_align_loop(feats, boxes, *args)
        fast = roi_align(feats, boxes, *args)
        diff = (ref - fast).abs().max().item()
        # The same rois given as one [K, 5] tensor, and as a list of unequal lengths.
        rois = torch.cat([torch.cat([torch.full((bx.shape[0], 1), float(i)), bx], 1) for i, bx in enumerate(boxes)])
        diff = max(diff, (ref - roi_align(feats, rois, *args)).abs().max().item())
        uneven = [boxes[0][: k // 2]] + boxes[1:]
        diff = max(diff, (roi_align_loop(feats, uneven, *args) - roi_align(feats, uneven, *args)).abs().max().item())
        log(f"roi_align B={b} C={c} {h}x{w} K={k} size={size} scale={scale} ratio={ratio} aligned={aligned}: max |diff| {diff:.3g}")
        assert diff <= tol, f"roi_align differs from the torchvision port by {diff} (> {tol})"
        worst = max(worst, diff)

    # Giant rois (hundreds of samples per bin along one axis): the fixed sample window must still
    # see every sample that lands on the map.
    feats = torch.randn(1, 2, 6, 9, generator=gen)
    giant = [torch.tensor([[0.5, -150.0, 2.0, 150.0], [-200.0, 1.0, 300.0, 2.0], [-1000.0, -3.0, 1000.0, 4.0]])]
    diff = (roi_align_loop(feats, giant, 7) - roi_align(feats, giant, 7)).abs().max().item()
    log(f"roi_align giant rois: max |diff| {diff:.3g}")
    assert diff <= tol, f"roi_align differs on giant rois by {diff} (> {tol})"
    worst = max(worst, diff)

    # Half precision: computed in float32, cast back.
    feats = torch.randn(2, 3, 12, 12, generator=gen)
    boxes = [_random_boxes(gen, 6, 12, 12) for _ in range(2)]
    for dt in (torch.bfloat16, torch.float16):
        got = roi_align(feats.to(dt), [bx.to(dt) for bx in boxes], 7)
        want = roi_align_loop(feats.to(dt).float(), [bx.to(dt).float() for bx in boxes], 7).to(dt)
        assert got.dtype == dt, f"roi_align returned {got.dtype} for {dt} input"
        d = (got.float() - want.float()).abs().max().item()
        log(f"roi_align {dt}: max |diff| {d:.3g}")
        assert d <= 1e-2, f"roi_align in {dt} differs by {d}"

    # Traceable with a fixed feature size; the batch and box count stay dynamic through unbind().
    def pooled(f: Tensor, bx: Tensor) -> Tensor:
        return roi_align(f, bx.unbind(0), 7)

    f2 = torch.randn(2, 3, 14, 14, generator=gen)
    b2 = torch.stack([_random_boxes(gen, 3, 14, 14) for _ in range(2)])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(pooled, (f2, b2), check_trace=False)
    f3 = torch.randn(3, 3, 14, 14, generator=gen)
    b3 = torch.stack([_random_boxes(gen, 5, 14, 14) for _ in range(3)])
    got = traced(f3, b3)
    want = roi_align_loop(f3, list(b3.unbind(0)), 7)
    d = (got - want).abs().max().item()
    log(f"roi_align traced at B=2,K=3, run at B=3,K=5: max |diff| {d:.3g}")
    assert got.shape == (15, 3, 7, 7) and d <= tol, f"traced roi_align does not generalise (diff {d})"
    worst = max(worst, d)
    return worst


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare roi_align with the torchvision port")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.check:
        parser.print_help()
        return 0
    try:
        worst = check(seed=args.seed)
    except AssertionError as err:
        print(f"roi_align check FAILED: {err}", file=sys.stderr)
        return 1
    print(f"roi_align check passed (max |diff| {worst:.3g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
