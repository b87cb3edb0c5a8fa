"""The text side's traced piece.

* text_encoder.pt (input_ids int64 [N,L], attention_mask int64 [N,L]) -> (text_features [N,L,D],):
  ``Sam3Model.get_text_features(...).pooler_output``.
"""
from __future__ import annotations

from torch import nn

from .pieces import borrow


class TextEncoderPiece(nn.Module):
    def __init__(self, model):
        super().__init__()
        borrow(self, model, ("config", "text_encoder", "text_projection"))

    def forward(self, input_ids, attention_mask):
        from transformers import Sam3Model

        out = Sam3Model.get_text_features(self, input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return (out.pooler_output,)
