"""What the piece modules share (pieces_*.py, detr_parts.py, tracker_pieces.py, memory_attention.py).

A piece holds only the submodules its code path touches, so its .pt holds only its own weights:
tracing a wrapper that holds the whole model would save the whole model in every .pt.
"""
from __future__ import annotations

from torch import nn


def borrow(piece: nn.Module, source, names) -> None:
    """Sets ``source``'s attributes ``names`` (submodules, parameters, config) on ``piece`` under the
    same names, in that order (the order the .pt lists them in)."""
    for name in names:
        setattr(piece, name, getattr(source, name))
