"""Pure-torch stand-ins for the two ``kernels-community/cv-utils`` kernels that transformers'
``Sam3VideoModel`` calls (mask NMS and connected components for hole filling / sprinkle removal).

transformers looks the kernel object up in ``modeling_sam3_video.cv_utils_kernel`` and, where the
optional ``kernels`` package is missing (as here), silently SKIPS NMS and hole filling. The native port
implements both, so the parity reference must run them: ``install_cv_kernels()`` puts a
``CvKernels`` object in that module global (and makes its loader a no-op), so transformers' own code
paths (``nms_masks``, ``fill_holes_in_mask_scores``) run with these implementations.

* ``generic_nms(ious, scores, iou_threshold, use_iou_matrix=True)``: greedy NMS over a pairwise IoU
  matrix. Detections are visited by descending score (ties: lower index first); each visited one that
  is still alive is kept and every later one whose IoU with it is > iou_threshold is dropped (IoU equal
  to the threshold survives). Returns the kept indices (int64) in visiting order.
* ``cc_2d(mask, get_counts=True)``: 8-connected components of a (B, 1, H, W) uint8 mask (non-zero =
  foreground), the connectivity of skimage.measure.label's 2-D default and of cc_torch. Returns
  (labels int32, counts int32), both (B, 1, H, W): labels 1..K per image numbered in raster order of
  each component's first pixel, 0 on the background; counts[p] = the area of p's component, 0 on the
  background.

Both run on the CPU in plain torch; masks here are small (the low-resolution mask logits, 4 * grid
pixels a side).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def generic_nms(ious: torch.Tensor, scores: torch.Tensor, iou_threshold: float, use_iou_matrix: bool = True) -> torch.Tensor:
    """Greedy NMS from an (N, N) IoU matrix; see the module docstring."""
    if not use_iou_matrix:
        raise NotImplementedError("generic_nms: only the IoU-matrix form (use_iou_matrix=True) is implemented")
    n = int(scores.numel())
    if tuple(ious.shape) != (n, n):
        raise ValueError(f"generic_nms: ious must be ({n}, {n}), got {tuple(ious.shape)}")
    order = torch.sort(scores.detach().float().cpu().reshape(-1), descending=True, stable=True).indices.tolist()
    over = (ious.detach().float().cpu() > float(iou_threshold)).tolist()
    alive = [True] * n
    kept: list[int] = []
    for i in order:
        if not alive[i]:
            continue
        kept.append(i)
        row = over[i]
        for j in range(n):
            if row[j]:
                alive[j] = False
    return torch.tensor(kept, dtype=torch.int64, device=scores.device)


def _propagate_max_labels(fg: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) bool -> float64 labels: every foreground pixel ends with the largest
    (raster index + 1) of its 8-connected component, the background with 0."""
    b, _, h, w = fg.shape
    index = torch.arange(1, h * w + 1, dtype=torch.float64).view(1, 1, h, w).expand(b, 1, h, w)
    labels = torch.where(fg, index, torch.zeros((), dtype=torch.float64))
    while True:
        grown = F.max_pool2d(labels, kernel_size=3, stride=1, padding=1)
        grown = torch.where(fg, grown, torch.zeros((), dtype=torch.float64))
        if torch.equal(grown, labels):
            return labels
        labels = grown


def cc_2d(mask: torch.Tensor, get_counts: bool = True):
    """8-connected components; see the module docstring. Returns (labels, counts), or labels alone
    when ``get_counts`` is False."""
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"cc_2d: expected a (B, 1, H, W) mask, got {tuple(mask.shape)}")
    device = mask.device
    fg = mask.detach().cpu() != 0
    b, _, h, w = fg.shape
    raw = _propagate_max_labels(fg).view(b, h * w)
    labels = torch.zeros(b, h * w, dtype=torch.int32)
    counts = torch.zeros(b, h * w, dtype=torch.int32)
    positions = torch.arange(h * w)
    for i in range(b):
        on = raw[i] > 0
        if not bool(on.any()):
            continue
        ids, inverse, sizes = torch.unique(raw[i][on], return_inverse=True, return_counts=True)
        # Number the components by their first pixel in raster order.
        first = torch.full((ids.numel(),), h * w, dtype=torch.long).scatter_reduce(0, inverse, positions[on], reduce="amin")
        rank = torch.empty_like(first)
        rank[torch.argsort(first)] = torch.arange(ids.numel())
        labels[i][on] = (rank[inverse] + 1).to(torch.int32)
        counts[i][on] = sizes[inverse].to(torch.int32)
    labels = labels.view(b, 1, h, w).to(device)
    counts = counts.view(b, 1, h, w).to(device)
    return (labels, counts) if get_counts else labels


class CvKernels:
    """The object transformers expects in ``modeling_sam3_video.cv_utils_kernel``."""

    generic_nms = staticmethod(generic_nms)
    cc_2d = staticmethod(cc_2d)


def install_cv_kernels(kernels=None):
    """Makes transformers' Sam3VideoModel run NMS and hole filling with ``kernels`` (a CvKernels by
    default): sets the module global it reads and makes its loader a no-op. Returns the object."""
    from transformers.models.sam3_video import modeling_sam3_video as msv

    kernels = kernels if kernels is not None else CvKernels()
    msv.cv_utils_kernel = kernels
    msv._load_cv_utils_kernel_once = lambda: None
    return kernels
