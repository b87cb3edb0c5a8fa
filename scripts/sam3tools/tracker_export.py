"""The video tracker half of a bundle: transformers' ``Sam3TrackerVideoModel`` as TorchScript pieces
that the addon's C++ tracking loop drives (the loop itself, memory bank and object pointers, lives in
native/video.cc and mirrors ``Sam3TrackerVideoModel.forward``).

Pieces (inputs positional, outputs tuples; C = hidden size, g = resolution / patch, R = resolution):

* tracker_neck.pt     (hidden [1,g*g,V]: the output of the bundle's vision_backbone.pt) -> (s0 [1,C/8,4g,4g],
  s1 [1,C/4,2g,2g], top [1,C,g,g], top_pos [1,C,g,g]): ``get_image_features`` after the ViT (tracker FPN
  neck, conv_s0/conv_s1), kept NCHW. The ViT itself is not here: transformers maps the detector's ViT
  onto the tracker, and the exporter checks the two are the same tensors, so the bundle keeps one copy.
* tracker_decode_multi.pt / tracker_decode_single.pt  (s0, s1, pix_feat [B,C,g,g], points [B,1,N,2]
  in model pixels, labels int32 [B,1,N]) -> (low_res_masks [B,1,4g,4g], high_res_masks [B,1,R,R],
  object_pointer [B,C], object_score_logits [B,1,1]): ``_single_frame_forward`` with
  multimask_output True / False (the best-IoU mask is picked inside, as transformers does).
* tracker_mask_prompt.pt (s0, s1, top, mask [B,1,R,R] 0/1) -> the same 4 outputs:
  ``_use_mask_as_output`` (a mask prompt is taken as the output and gives the object pointer).
* memory_encoder.pt / memory_encoder_points.pt (top [B,C,g,g], high_res_masks [B,1,R,R],
  object_score_logits [B,1,1]) -> (maskmem_features bfloat16 [B,64,g,g], maskmem_pos [B,64,g,g]):
  ``_encode_new_memory`` with is_mask_from_pts False / True.
* memory_attention.pt: a TorchScript-*scripted* re-implementation of ``Sam3TrackerVideoMemoryAttention``
  plus the pointer/temporal encodings, over the same weights, because the traced module bakes in the
  number of memory frames and object pointers. Methods:
  ``forward(top [1,C,g,g], top_pos [1,C,g,g], mem [F,64,g,g] bf16, mem_pos [F,64,g,g],
  mem_offsets int64 [F], pointers [P,C], pointer_offsets int64 [P], max_pointers int) -> [1,C,g,g]``
  (the memory-conditioned features), and ``no_memory(top) -> [1,C,g,g]`` (initial conditioning frames).

Every piece is checked against eager on inputs other than the trace inputs; the memory attention at
several memory/pointer counts.
"""
from __future__ import annotations

import math
import os
import time
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .subpixel import fast_fpn_level


# --------------------------------------------------------------------------------------- traced pieces


class TrackerNeckPiece(nn.Module):
    """The tracker's FPN neck with conv_s0 / conv_s1 folded into its 4x and 2x levels, both in their
    sub-pixel form (subpixel.py: at facebook/sam3's size the 4x level's 3x3 convolution over 256
    channels at 288x288 becomes a 2x2 one at 144x144 that makes only conv_s0's 32); the unused 0.5x
    level is not run."""

    def __init__(self, tracker, grid: int):
        super().__init__()
        neck = tracker.vision_encoder.neck
        layers = list(neck.fpn_layers)
        self.s0 = fast_fpn_level(layers[0], tracker.mask_decoder.conv_s0)
        self.s1 = fast_fpn_level(layers[1], tracker.mask_decoder.conv_s1)
        self.top = layers[2]
        self.position_encoding = neck.position_encoding
        self.grid = grid

    def forward(self, hidden):
        x = hidden.view(hidden.shape[0], self.grid, self.grid, -1).permute(0, 3, 1, 2)
        top = self.top(x)
        return self.s0(x), self.s1(x), top, self.position_encoding(top.shape, top.device, top.dtype)


class TrackerVisionEager(nn.Module):
    """The tracker's whole eager ``get_image_features`` (NCHW): what backbone + tracker_neck reproduce."""

    def __init__(self, tracker):
        super().__init__()
        self.vision_encoder = tracker.vision_encoder
        self.mask_decoder = tracker.mask_decoder

    def forward(self, pixel_values):
        out = self.vision_encoder(pixel_values, return_dict=True)
        f = out.fpn_hidden_states
        return self.mask_decoder.conv_s0(f[0]), self.mask_decoder.conv_s1(f[1]), f[2], out.fpn_position_encoding[2]


class _TrackerMethods(nn.Module):
    """Holds the tracker submodules a method touches and borrows Sam3TrackerVideoModel's methods."""

    def __init__(self, tracker, names):
        super().__init__()
        self.config = tracker.config
        self.image_size = tracker.image_size
        self.backbone_feature_sizes = tracker.backbone_feature_sizes
        self.hidden_dim = tracker.hidden_dim
        for name in names:
            setattr(self, name, getattr(tracker, name))


DECODE_MODULES = ("shared_image_embedding", "prompt_encoder", "mask_decoder", "object_pointer_proj", "no_object_pointer")


class TrackerDecodePiece(_TrackerMethods):
    def __init__(self, tracker, multimask: bool):
        super().__init__(tracker, DECODE_MODULES)
        self.multimask = multimask

    def forward(self, s0, s1, pix_feat, points, labels):
        from transformers import Sam3TrackerVideoModel as M

        self.get_image_wide_positional_embeddings = lambda: M.get_image_wide_positional_embeddings(self)
        out = M._single_frame_forward(
            self, input_points=points, input_labels=labels.to(torch.int32), image_embeddings=[s0, s1, pix_feat],
            multimask_output=self.multimask,
        )
        return out.pred_masks, out.high_res_masks, out.object_pointer, out.object_score_logits


class TrackerMaskPromptPiece(_TrackerMethods):
    def __init__(self, tracker):
        super().__init__(tracker, DECODE_MODULES + ("mask_downsample",))

    def forward(self, s0, s1, top, mask):
        from transformers import Sam3TrackerVideoModel as M

        self.get_image_wide_positional_embeddings = lambda: M.get_image_wide_positional_embeddings(self)
        self._single_frame_forward = lambda **kw: M._single_frame_forward(self, **kw)
        out = M._use_mask_as_output(self, top, [s0, s1], mask)
        return out.pred_masks, out.high_res_masks, out.object_pointer, out.object_score_logits


class MemoryEncoderPiece(_TrackerMethods):
    def __init__(self, tracker, from_points: bool):
        super().__init__(tracker, ("memory_encoder", "prompt_encoder", "occlusion_spatial_embedding_parameter"))
        self.from_points = from_points

    def forward(self, top, high_res_masks, object_score_logits):
        from transformers import Sam3TrackerVideoModel as M

        b, c, h, w = top.shape
        feats = top.flatten(2).permute(2, 0, 1)  # (HW)BC, as the model keeps it
        mem, pos = M._encode_new_memory(self, feats, high_res_masks, object_score_logits, self.from_points)
        # (HW)BC -> BCHW
        return mem.permute(1, 2, 0).reshape(b, -1, h, w), pos.permute(1, 2, 0).reshape(b, -1, h, w)


# ------------------------------------------------------------------------- scripted memory attention


class _RopeAttention(nn.Module):
    def __init__(self, src, rope_k_repeat: bool):
        super().__init__()
        self.q_proj = src.q_proj
        self.k_proj = src.k_proj
        self.v_proj = src.v_proj
        self.o_proj = src.o_proj
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
        self.linear1 = src.linear1
        self.linear2 = src.linear2
        self.layer_norm1 = src.layer_norm1
        self.layer_norm2 = src.layer_norm2
        self.layer_norm3 = src.layer_norm3
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


# ----------------------------------------------------------------------------------------- export


def load_tracker(folder: str, dtype, device):
    """Sam3TrackerVideoModel from a sam3_video checkpoint (transformers maps detector_model's ViT and
    tracker_neck onto the tracker's own vision encoder)."""
    from transformers import Sam3TrackerVideoModel
    from transformers.utils import logging as hf_logging

    from .checkpoint_io import CheckpointError, _first_line

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = Sam3TrackerVideoModel.from_pretrained(folder, dtype=dtype, output_loading_info=True)
    except Exception as err:
        raise CheckpointError(f"cannot load the video tracker in {folder} ({type(err).__name__}: {_first_line(err)})") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise CheckpointError(f"the video tracker weights in {folder} are incomplete: {len(missing)} missing tensors (e.g. {missing[0]})")
    model = model.to(dtype=dtype).to(device).eval()
    model.requires_grad_(False)
    return model


def has_tracker(raw_config: dict) -> bool:
    """A sam3_video checkpoint (facebook/sam3's layout) carries the tracker; a plain sam3 one does not."""
    return raw_config.get("model_type") == "sam3_video"


def export_tracker(folder: str, out: str, dev, torch_dtype, resolution: int, log, trace, compare, save_script, fingerprint: dict | None = None) -> dict:
    """Writes the tracker pieces into ``out``; returns the manifest's ``video`` section (without files)."""
    t_all = time.time()
    tracker = load_tracker(folder, torch_dtype, dev)
    cfg = tracker.config
    gen = torch.Generator().manual_seed(1)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device=dev, dtype=torch_dtype)

    sizes = [list(s) for s in cfg.vision_config.backbone_feature_sizes]
    g = sizes[2][0]
    c = int(tracker.hidden_dim)
    result = {}
    with torch.no_grad():
        t0 = time.time()
        if fingerprint is not None:
            from .checkpoint_io import CheckpointError
            from .export import backbone_fingerprint

            if backbone_fingerprint(tracker.vision_encoder.backbone) != fingerprint:
                raise CheckpointError("the video tracker's ViT differs from the detector's in this checkpoint; this bundle format shares one ViT between them")
        piece = TrackerNeckPiece(tracker, g).eval()
        backbone = tracker.vision_encoder.backbone
        x = randn(1, 3, resolution, resolution)
        traced = trace(piece, (backbone(x).last_hidden_state,))
        x = randn(1, 3, resolution, resolution)
        diff = compare("tracker_neck", traced(backbone(x).last_hidden_state), TrackerVisionEager(tracker)(x), torch_dtype, "ViT + tracker_neck vs the eager tracker vision features, new frame")
        feats = traced(backbone(x).last_hidden_state)
        s0_shape, s1_shape = list(feats[0].shape[1:]), list(feats[1].shape[1:])
        save_script(traced, os.path.join(out, "tracker_neck.pt"))
        del traced, piece, backbone, feats
        tracker.vision_encoder = None  # the ViT is in vision_backbone.pt; free this copy
        log(f"tracker_neck: s0 {s0_shape}, s1 {s1_shape}, top {[c, g, g]}, traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

        def feat_batch(b):
            return randn(b, *s0_shape), randn(b, *s1_shape), randn(b, c, g, g)

        def pts(b, n, box=False):
            p = torch.rand(b, 1, n, 2, generator=gen) * resolution
            lab = torch.randint(0, 2, (b, 1, n), generator=gen, dtype=torch.int32)
            if box and n >= 2:
                lab[:, :, 0], lab[:, :, 1] = 2, 3
            return p.to(device=dev, dtype=torch_dtype), lab.to(dev)

        for multimask, name in ((True, "tracker_decode_multi"), (False, "tracker_decode_single")):
            t0 = time.time()
            piece = TrackerDecodePiece(tracker, multimask).eval()
            traced = trace(piece, feat_batch(1) + pts(1, 2, box=True))
            diff = 0.0
            for b, n in ((1, 1), (1, 3), (2, 2)):
                args = feat_batch(b) + pts(b, n, box=n == 2)
                diff = max(diff, compare(name, traced(*args), piece(*args), torch_dtype, f"B={b}, N={n}"))
            # the padding point transformers uses when there is no prompt: (0, 0) with label -1
            args = feat_batch(1) + (torch.zeros(1, 1, 1, 2, device=dev, dtype=torch_dtype), -torch.ones(1, 1, 1, dtype=torch.int32, device=dev))
            diff = max(diff, compare(name, traced(*args), piece(*args), torch_dtype, "no prompt"))
            save_script(traced, os.path.join(out, f"{name}.pt"))
            del traced, piece
            log(f"{name}: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

        t0 = time.time()
        piece = TrackerMaskPromptPiece(tracker).eval()

        def mask_in(b):
            m = torch.zeros(b, 1, resolution, resolution)
            for i in range(b):
                y0, x0 = int(torch.randint(0, resolution // 2, (1,), generator=gen)), int(torch.randint(0, resolution // 2, (1,), generator=gen))
                m[i, :, y0 : y0 + resolution // 3, x0 : x0 + resolution // 4] = 1
            return m.to(device=dev, dtype=torch_dtype)

        traced = trace(piece, feat_batch(1) + (mask_in(1),))
        diff = 0.0
        for b in (1, 2):
            args = feat_batch(b) + (mask_in(b),)
            diff = max(diff, compare("tracker_mask_prompt", traced(*args), piece(*args), torch_dtype, f"B={b}"))
        empty = feat_batch(1) + (torch.zeros(1, 1, resolution, resolution, device=dev, dtype=torch_dtype),)
        diff = max(diff, compare("tracker_mask_prompt", traced(*empty), piece(*empty), torch_dtype, "empty mask"))
        save_script(traced, os.path.join(out, "tracker_mask_prompt.pt"))
        del traced, piece
        log(f"tracker_mask_prompt: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

        for from_points, name in ((False, "memory_encoder"), (True, "memory_encoder_points")):
            t0 = time.time()
            piece = MemoryEncoderPiece(tracker, from_points).eval()
            traced = trace(piece, (randn(2, c, g, g), randn(2, 1, resolution, resolution, scale=5.0), randn(2, 1, 1)))
            diff = 0.0
            for b in (1, 3):
                args = (randn(b, c, g, g), randn(b, 1, resolution, resolution, scale=5.0), randn(b, 1, 1))
                diff = max(diff, compare(name, traced(*args), piece(*args), torch_dtype, f"B={b}"))
            save_script(traced, os.path.join(out, f"{name}.pt"))
            del traced, piece
            log(f"{name}: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

        t0 = time.time()
        script = torch.jit.script(MemoryAttentionScript(tracker).eval())
        diff = 0.0
        max_ptr = int(cfg.max_object_pointers_in_encoder)
        for frames, ptrs in ((1, 0), (1, 1), (3, 2), (int(cfg.num_maskmem), max_ptr), (5, 7)):
            top, top_pos = randn(1, c, g, g), randn(1, c, g, g)
            mem = randn(frames, 64, g, g).to(torch.bfloat16)
            mem_pos = randn(frames, 64, g, g)
            offsets = torch.tensor([0] + list(range(frames - 1, 0, -1)), dtype=torch.long, device=dev)[:frames]
            pointers = randn(ptrs, c)
            poff = torch.arange(ptrs, dtype=torch.long, device=dev)
            want = eager_memory_conditioning(tracker, top, top_pos, mem, mem_pos, offsets, pointers, poff, max_ptr)
            got = script(top, top_pos, mem, mem_pos, offsets, pointers, poff, max_ptr)
            diff = max(diff, compare("memory_attention", got, want, torch_dtype, f"{frames} memory frames, {ptrs} pointers"))
            shared = script(top, top_pos, mem, mem_pos, offsets, pointers, poff, max_ptr, script.first_self_attention(top, top_pos))
            diff = max(diff, compare("memory_attention", shared, want, torch_dtype, f"{frames} memory frames, {ptrs} pointers, shared first self-attention"))
        top = randn(1, c, g, g)
        want = (top.flatten(2).permute(2, 0, 1) + tracker.no_memory_embedding).permute(1, 2, 0).view(1, c, g, g)
        diff = max(diff, compare("memory_attention.no_memory", script.no_memory(top), want, torch_dtype, "no memory"))
        save_script(script, os.path.join(out, "memory_attention.pt"))
        log(f"memory_attention (scripted): scripted vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")

    result = {
        "hidden_size": c,
        "memory_dim": int(tracker.mem_dim),
        "feature_size": g,
        "low_res_mask_size": int(sizes[0][0]),
        "s0_shape": s0_shape,
        "s1_shape": s1_shape,
        "num_maskmem": int(cfg.num_maskmem),
        "max_cond_frame_num": int(cfg.max_cond_frame_num),
        "max_object_pointers": max_ptr,
        "multimask_output_in_sam": bool(cfg.multimask_output_in_sam),
        "multimask_min_pt_num": int(cfg.multimask_min_pt_num),
        "multimask_max_pt_num": int(cfg.multimask_max_pt_num),
        "multimask_output_for_tracking": bool(cfg.multimask_output_for_tracking),
    }
    del tracker
    log(f"video tracker exported in {time.time() - t_all:.1f} s")
    return result


TRACKER_FILES = (
    "tracker_neck",
    "tracker_decode_multi",
    "tracker_decode_single",
    "tracker_mask_prompt",
    "memory_encoder",
    "memory_encoder_points",
    "memory_attention",
)
