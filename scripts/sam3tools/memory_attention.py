"""memory_attention.pt: a TorchScript-*scripted* re-implementation of
``Sam3TrackerVideoMemoryAttention`` plus the pointer/temporal encodings, over the same weights,
because the traced module bakes in the number of memory frames and object pointers. Methods:
``forward(top [1,C,g,g], top_pos [1,C,g,g], mem [F,64,g,g] bf16, mem_pos [F,64,g,g],
mem_offsets int64 [F], pointers [P,C], pointer_offsets int64 [P], max_pointers int) -> [1,C,g,g]``
(the memory-conditioned features), ``no_memory(top) -> [1,C,g,g]`` (initial conditioning frames) and
``first_self_attention(top, top_pos)`` (the first layer's self-attention, shared by a frame's objects).

``eager_memory_conditioning`` computes the same through transformers' own modules: the exporter
checks the scripted module against it at several memory/pointer counts. It is written out on
purpose rather than shared with the scripted module, so that the check compares two independent
writings of the same computation.
"""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .pieces import borrow


class _RopeAttention(nn.Module):
    def __init__(self, src, rope_k_repeat: bool):
        super().__init__()
        borrow(self, src, ("q_proj", "k_proj", "v_proj", "o_proj"))
        self.num_heads = int(src.num_attention_heads)
        self.head_dim = int(src.head_dim)
        self.scaling = float(src.scaling)
        self.rope_k_repeat = rope_k_repeat

    def forward(self, query, key, value, cos, sin, num_k_exclude_rope: int):
        # query [B,1,Lq,D], key/value [B,1,Lk,Dk]; cos/sin [1,Lq,hd]
        b = query.shape[0]
        q = self.q_proj(query).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(key).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(value).view(b, -1, self.num_heads, self.head_dim).transpose(1, 2)
        q_embed = q.float()
        q_embed = (q_embed * cos) + (_rotate_pairwise(q_embed) * sin)
        q = q_embed.type_as(q)
        n_rot = k.shape[-2] - num_k_exclude_rope
        k_rot = k[:, :, :n_rot, :]
        k_pass = k[:, :, n_rot:, :]
        if n_rot > 0:
            if self.rope_k_repeat and n_rot != q.shape[-2]:
                r = n_rot // q.shape[-2]
                cos_k = cos.repeat(1, 1, r, 1)
                sin_k = sin.repeat(1, 1, r, 1)
            else:
                cos_k = cos
                sin_k = sin
            k_embed = k_rot.float()
            k_embed = (k_embed * cos_k) + (_rotate_pairwise(k_embed) * sin_k)
            k = torch.cat([k_embed.type_as(k), k_pass], dim=-2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=self.scaling)
        out = out.transpose(1, 2).contiguous()
        out = out.reshape(b, 1, -1, self.num_heads * self.head_dim).contiguous()
        return self.o_proj(out)


def _rotate_pairwise(x):
    shape: List[int] = x.shape
    x = x.view(shape[:-1] + [-1, 2])
    x1 = x[..., 0]
    x2 = x[..., 1]
    x = torch.stack((-x2, x1), dim=-1)
    return x.flatten(-2)


class _MemoryLayer(nn.Module):
    def __init__(self, src):
        super().__init__()
        self.self_attn = _RopeAttention(src.self_attn, False)
        self.cross_attn_image = _RopeAttention(src.cross_attn_image, True)
        borrow(self, src, ("linear1", "linear2", "layer_norm1", "layer_norm2", "layer_norm3"))
        act = type(src.activation).__name__.lower()
        if "relu" not in act:
            raise ValueError(f"memory attention activation {act} is not supported by the scripted re-implementation (ReLU only)")

    def self_part(self, queries, cos, sin):
        q = self.layer_norm1(queries)
        return queries + self.self_attn(q, q, q, cos, sin, 0)

    def forward(self, queries, keys, key_pos, cos, sin, num_k_exclude_rope: int, self_done: bool):
        if not self_done:
            queries = self.self_part(queries, cos, sin)
        q = self.layer_norm2(queries)
        queries = queries + self.cross_attn_image(q, keys + key_pos, keys, cos, sin, num_k_exclude_rope)
        q = self.layer_norm3(queries)
        return queries + self.linear2(torch.relu(self.linear1(q)))


class MemoryAttentionScript(nn.Module):
    """Sam3TrackerVideoModel's memory conditioning (``_prepare_memory_conditioned_features`` from the
    gathered memories on), for any number of memory frames and object pointers."""

    def __init__(self, tracker):
        super().__init__()
        cfg = tracker.config
        ma = tracker.memory_attention
        self.layers = nn.ModuleList([_MemoryLayer(layer) for layer in ma.layers])
        self.layer_norm = ma.layer_norm
        cos, sin = ma.rotary_emb(torch.zeros(1), ma.position_ids)
        self.register_buffer("rope_cos", cos.float().contiguous())
        self.register_buffer("rope_sin", sin.float().contiguous())
        self.no_memory_embedding = tracker.no_memory_embedding  # [1,1,C]
        self.memory_temporal_positional_encoding = tracker.memory_temporal_positional_encoding  # [T,1,1,64]
        self.temporal_proj = tracker.temporal_positional_encoding_projection_layer
        self.use_pointer_tpos = bool(cfg.enable_temporal_pos_encoding_for_object_pointers)
        self.hidden_dim = int(tracker.hidden_dim)
        self.mem_dim = int(tracker.mem_dim)

    @torch.jit.export
    def no_memory(self, top):
        b, c, h, w = top.shape
        x = top.flatten(2).permute(2, 0, 1) + self.no_memory_embedding
        return x.permute(1, 2, 0).reshape(b, c, h, w)

    @torch.jit.export
    def first_self_attention(self, top, top_pos):
        """The first layer's self-attention: it reads only the frame's features, so every object of
        a frame shares it (pass it to forward as ``first``)."""
        current = top.flatten(2).permute(2, 0, 1)
        current_pos = top_pos.flatten(2).permute(2, 0, 1)
        out = (current + 0.1 * current_pos).transpose(0, 1).unsqueeze(1)
        return self.layers[0].self_part(out, self.rope_cos, self.rope_sin)

    def forward(self, top, top_pos, mem, mem_pos, mem_offsets, pointers, pointer_offsets, max_pointers: int, first: Optional[torch.Tensor] = None):
        b, c, h, w = top.shape
        hw = h * w
        current = top.flatten(2).permute(2, 0, 1)  # [HW,1,C]
        current_pos = top_pos.flatten(2).permute(2, 0, 1)
        # memory frames: [F,64,g,g] -> [F*HW,1,64], with the temporal encoding of each frame's offset
        f = mem.shape[0]
        mem_seq = mem.flatten(2).permute(0, 2, 1).reshape(f * hw, 1, self.mem_dim)
        tpos = self.memory_temporal_positional_encoding[mem_offsets - 1]  # [F,1,1,64]; offset 0 -> last row
        pos_seq = (mem_pos.flatten(2).permute(0, 2, 1).unsqueeze(2) + tpos).reshape(f * hw, 1, self.mem_dim)
        memories = [mem_seq.to(top.dtype)]
        positions = [pos_seq.to(top.dtype)]
        num_ptr_tokens = 0
        p = pointers.shape[0]
        if p > 0:
            ptrs = pointers.unsqueeze(1)  # [P,1,C]
            if self.use_pointer_tpos:
                diffs = pointer_offsets.to(torch.float32) / float(max_pointers - 1)
                pe_dim = c // 2
                dim_t = torch.arange(pe_dim, dtype=torch.float32, device=top.device)
                dim_t = 10000.0 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / pe_dim)
                pe = diffs.unsqueeze(-1) / dim_t
                pe = torch.cat([pe.sin(), pe.cos()], dim=-1).to(ptrs.dtype)
                ptr_pos = self.temporal_proj(pe).unsqueeze(1).expand(-1, 1, self.mem_dim)
            else:
                ptr_pos = torch.zeros(p, 1, self.mem_dim, dtype=ptrs.dtype, device=top.device)
            if self.mem_dim < c:
                splits = c // self.mem_dim
                ptrs = ptrs.reshape(-1, 1, splits, self.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
                ptr_pos = ptr_pos.repeat_interleave(splits, dim=0)
            memories.append(ptrs)
            positions.append(ptr_pos)
            num_ptr_tokens = ptrs.shape[0]
        memory = torch.cat(memories, dim=0)
        memory_pos = torch.cat(positions, dim=0)

        output = current + 0.1 * current_pos
        output = output.transpose(0, 1)  # [1,HW,C]
        keys = memory.transpose(0, 1).unsqueeze(1)
        key_pos = memory_pos.transpose(0, 1).unsqueeze(1)
        out = output.unsqueeze(1)
        i = 0
        for layer in self.layers:
            if i == 0 and first is not None:
                out = layer(first, keys, key_pos, self.rope_cos, self.rope_sin, num_ptr_tokens, True)
            else:
                out = layer(out, keys, key_pos, self.rope_cos, self.rope_sin, num_ptr_tokens, False)
            i += 1
        out = self.layer_norm(out)  # [1,1,HW,C]
        return out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)


# ------------------------------------------------------------------------------------ eager references


def eager_memory_conditioning(tracker, top, top_pos, mem, mem_pos, mem_offsets, pointers, pointer_offsets, max_pointers):
    """The same computation through transformers' own modules (for checking the scripted one)."""
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import get_1d_sine_pe

    b, c, h, w = top.shape
    current = top.flatten(2).permute(2, 0, 1)
    current_pos = top_pos.flatten(2).permute(2, 0, 1)
    memories, positions = [], []
    for i in range(mem.shape[0]):
        memories.append(mem[i : i + 1].flatten(2).permute(2, 0, 1))
        positions.append(mem_pos[i : i + 1].flatten(2).permute(2, 0, 1) + tracker.memory_temporal_positional_encoding[int(mem_offsets[i]) - 1])
    n_ptr = 0
    if pointers.shape[0]:
        ptrs = pointers.unsqueeze(1)
        diffs = pointer_offsets.float() / float(max_pointers - 1)
        pe = get_1d_sine_pe(diffs, dim=c).to(ptrs.dtype)
        ptr_pos = tracker.temporal_positional_encoding_projection_layer(pe).unsqueeze(1).expand(-1, 1, tracker.mem_dim)
        if tracker.mem_dim < c:
            splits = c // tracker.mem_dim
            ptrs = ptrs.reshape(-1, 1, splits, tracker.mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            ptr_pos = ptr_pos.repeat_interleave(splits, dim=0)
        memories.append(ptrs)
        positions.append(ptr_pos)
        n_ptr = ptrs.shape[0]
    out = tracker.memory_attention(
        current_vision_features=current,
        current_vision_position_embeddings=current_pos,
        memory=torch.cat(memories, 0).to(top.dtype),
        memory_posision_embeddings=torch.cat(positions, 0),
        num_object_pointer_tokens=n_ptr,
    )
    return out.squeeze(1).transpose(1, 2).view(b, c, h, w)
