"""Tracing a piece, checking it against eager on fresh inputs and saving it into the bundle.

TorchScript bakes the trace device into tensors created inside forward, and shape-dependent Python
into the graph, so every piece is traced on the target device and dtype and then checked on inputs
of another batch size, prompt length or box count than it was traced with before it is saved.
"""
from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from .errors import ExportError

# Traced vs eager (relative to max(1, max |eager|)): the FPN levels' sub-pixel form and the mask
# factors change the order of float sums (~1e-6 in float32); these also bound what fusion on an
# accelerator may change.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


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
        # sequence layout); the checks on different batch sizes are what we rely on.
        warnings.simplefilter("ignore")
        return torch.jit.trace(piece, inputs, check_trace=False, strict=False)


def save_script(module: torch.jit.ScriptModule, path: str) -> None:
    tmp = path + ".tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 nudges towards torch.export
        torch.jit.save(module, tmp)
    os.replace(tmp, path)


class Tracer:
    """What every export stage needs: seeded random inputs on the export's device and dtype, trace,
    check against eager, save into the bundle folder. One per half of the bundle (the detector's
    generator is seeded 0, the tracker's 1), so a stage's inputs do not depend on the other half."""

    def __init__(self, out: str, device: torch.device, dtype: torch.dtype, log, seed: int):
        self.out = out
        self.device = device
        self.dtype = dtype
        self.log = log
        self.gen = torch.Generator().manual_seed(seed)

    def randn(self, *shape, scale=1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=self.gen) * scale).to(device=self.device, dtype=self.dtype)

    trace = staticmethod(trace)

    def compare(self, name: str, got, want, what: str) -> float:
        return compare(name, got, want, self.dtype, what)

    def check(self, name: str, traced, eager, cases) -> float:
        """The worst relative diff of traced against eager over ``cases``: (inputs, what) pairs,
        made one at a time (so the generator's draws come in the order the cases are written)."""
        diff = 0.0
        for args, what in cases:
            diff = max(diff, self.compare(name, traced(*args), eager(*args), what))
        return diff

    def save(self, module: torch.jit.ScriptModule, name: str) -> None:
        save_script(module, os.path.join(self.out, f"{name}.pt"))
