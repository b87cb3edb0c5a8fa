"""The video tracker half of a bundle: transformers' ``Sam3TrackerVideoModel`` as TorchScript pieces
that the addon's C++ tracking loop drives (the loop itself, memory bank and object pointers, lives in
native/core/tracker.cc and mirrors ``Sam3TrackerVideoModel.forward``). The pieces and their signatures are in
tracker_pieces.py and memory_attention.py; every piece is checked against eager on inputs other than
the trace inputs, the memory attention at several memory/pointer counts.

The stages run in a fixed order from one generator (Tracer, seeded 1), so a bundle's trace inputs,
and with them its files, are the same from run to run.
"""
from __future__ import annotations

import time

import torch

from .checkpoint_io import CheckpointError, _first_line
from .concept_config import concept_settings
from .memory_attention import MemoryAttentionScript, eager_memory_conditioning
from .trace import Tracer
from .tracker_pieces import InteractiveDecodePiece, MemoryEncoderPiece, TrackerDecodePiece, TrackerMaskPromptPiece, TrackerNeckPiece, TrackerVisionEager

TRACKER_FILES = (
    "tracker_neck",
    "tracker_decode_multi",
    "tracker_decode_single",
    "tracker_mask_prompt",
    "memory_encoder",
    "memory_encoder_points",
    "memory_attention",
    "tracker_interactive_multi",
    "tracker_interactive_single",
)


def load_tracker(folder: str, dtype, device):
    """Sam3TrackerVideoModel from a sam3_video checkpoint (transformers maps detector_model's ViT and
    tracker_neck onto the tracker's own vision encoder)."""
    from transformers import Sam3TrackerVideoModel
    from transformers.utils import logging as hf_logging

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


def backbone_fingerprint(backbone: torch.nn.Module) -> dict:
    """sha256 of every ViT tensor: the tracker must read the very same ViT as the detector."""
    import hashlib

    out = {}
    for name, t in backbone.state_dict().items():
        out[name] = hashlib.sha256(t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
    return out



def export_tracker(folder: str, out: str, dev, torch_dtype, resolution: int, log, fingerprint: dict | None = None) -> dict:
    """Writes the tracker pieces into ``out``; returns the manifest's ``video`` section (without files),
    with ``concept``: the concept-tracking settings of the checkpoint's Sam3VideoConfig
    (concept_config.CONCEPT_FIELDS, by name). ``fingerprint``: the detector's backbone_fingerprint,
    which the tracker's ViT must match."""
    t_all = time.time()
    tracker = load_tracker(folder, torch_dtype, dev)
    tracer = Tracer(out, dev, torch_dtype, log, seed=1)
    with torch.no_grad():
        if fingerprint is not None and backbone_fingerprint(tracker.vision_encoder.backbone) != fingerprint:
            raise CheckpointError("the video tracker's ViT differs from the detector's in this checkpoint; this bundle format shares one ViT between them")
        inputs = export_tracker_neck(tracer, tracker, resolution)
        tracker.vision_encoder = None  # the ViT is in vision_backbone.pt; free this copy
        export_tracker_decoders(tracer, tracker, inputs)
        export_tracker_mask_prompt(tracer, tracker, inputs)
        export_memory_encoders(tracer, tracker, inputs)
        export_memory_attention(tracer, tracker, inputs)
        export_interactive_decoders(tracer, tracker, inputs)
    result = video_section(tracker, inputs)
    result["concept"] = concept_settings(folder)
    del tracker
    log(f"video tracker exported in {time.time() - t_all:.1f} s")
    return result


class TrackerInputs:
    """Random inputs for the tracker's traces and checks, at the shapes tracker_neck makes."""

    def __init__(self, tracer: Tracer, resolution: int, s0_shape: list, s1_shape: list, hidden: int, grid: int):
        self.tracer = tracer
        self.resolution = resolution
        self.s0_shape = s0_shape
        self.s1_shape = s1_shape
        self.c = hidden
        self.g = grid

    def features(self, b: int) -> tuple:
        """(s0, s1, top) of b frames."""
        randn = self.tracer.randn
        return randn(b, *self.s0_shape), randn(b, *self.s1_shape), randn(b, self.c, self.g, self.g)

    def points(self, b: int, n: int, box: bool = False) -> tuple:
        """n points in model pixels with labels 0/1 a row; with box, the first two a box's corners (2, 3)."""
        gen, dev = self.tracer.gen, self.tracer.device
        p = torch.rand(b, 1, n, 2, generator=gen) * self.resolution
        lab = torch.randint(0, 2, (b, 1, n), generator=gen, dtype=torch.int32)
        if box and n >= 2:
            lab[:, :, 0], lab[:, :, 1] = 2, 3
        return p.to(device=dev, dtype=self.tracer.dtype), lab.to(dev)

    def masks(self, b: int) -> tuple:
        """A 0/1 rectangle a row, somewhere in the frame."""
        r, gen = self.resolution, self.tracer.gen
        m = torch.zeros(b, 1, r, r)
        for i in range(b):
            y0, x0 = int(torch.randint(0, r // 2, (1,), generator=gen)), int(torch.randint(0, r // 2, (1,), generator=gen))
            m[i, :, y0 : y0 + r // 3, x0 : x0 + r // 4] = 1
        return (m.to(device=self.tracer.device, dtype=self.tracer.dtype),)

    def memory_inputs(self, b: int) -> tuple:
        """(top, high_res_masks, object_score_logits) for the memory encoder."""
        randn = self.tracer.randn
        return randn(b, self.c, self.g, self.g), randn(b, 1, self.resolution, self.resolution, scale=5.0), randn(b, 1, 1)


def export_tracker_neck(tracer: Tracer, tracker, resolution: int) -> TrackerInputs:
    """tracker_neck, on the ViT output of a frame, checked with the ViT against the eager tracker's
    vision features on a new frame. Returns the inputs of the later stages, at its output shapes."""
    t0 = time.time()
    sizes = tracker.config.vision_config.backbone_feature_sizes
    g = list(sizes[2])[0]
    c = int(tracker.hidden_dim)
    piece = TrackerNeckPiece(tracker, g).eval()
    backbone = tracker.vision_encoder.backbone
    x = tracer.randn(1, 3, resolution, resolution)
    traced = tracer.trace(piece, (backbone(x).last_hidden_state,))
    x = tracer.randn(1, 3, resolution, resolution)
    diff = tracer.compare("tracker_neck", traced(backbone(x).last_hidden_state), TrackerVisionEager(tracker)(x), "ViT + tracker_neck vs the eager tracker vision features, new frame")
    feats = traced(backbone(x).last_hidden_state)
    s0_shape, s1_shape = list(feats[0].shape[1:]), list(feats[1].shape[1:])
    tracer.save(traced, "tracker_neck")
    tracer.log(f"tracker_neck: s0 {s0_shape}, s1 {s1_shape}, top {[c, g, g]}, traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")
    return TrackerInputs(tracer, resolution, s0_shape, s1_shape, c, g)


def export_tracker_decoders(tracer: Tracer, tracker, inputs: TrackerInputs) -> None:
    """tracker_decode_multi / _single: traced on a box prompt; checked on 1 and 3 points, a batch of
    2 boxes, and the padding point transformers uses when there is no prompt ((0, 0), label -1)."""
    for multimask, name in ((True, "tracker_decode_multi"), (False, "tracker_decode_single")):
        t0 = time.time()
        piece = TrackerDecodePiece(tracker, multimask).eval()
        traced = tracer.trace(piece, inputs.features(1) + inputs.points(1, 2, box=True))
        diff = tracer.check(name, traced, piece, _decode_cases(inputs))
        tracer.save(traced, name)
        tracer.log(f"{name}: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")


def _decode_cases(inputs: TrackerInputs):
    for b, n in ((1, 1), (1, 3), (2, 2)):
        yield inputs.features(b) + inputs.points(b, n, box=n == 2), f"B={b}, N={n}"
    dev, dtype = inputs.tracer.device, inputs.tracer.dtype
    no_prompt = (torch.zeros(1, 1, 1, 2, device=dev, dtype=dtype), -torch.ones(1, 1, 1, dtype=torch.int32, device=dev))
    yield inputs.features(1) + no_prompt, "no prompt"


def export_tracker_mask_prompt(tracer: Tracer, tracker, inputs: TrackerInputs) -> None:
    """tracker_mask_prompt: traced on one mask; checked on batches of 1 and 2 and on an empty mask."""
    t0 = time.time()
    piece = TrackerMaskPromptPiece(tracker).eval()
    traced = tracer.trace(piece, inputs.features(1) + inputs.masks(1))
    diff = tracer.check("tracker_mask_prompt", traced, piece, _mask_prompt_cases(inputs))
    tracer.save(traced, "tracker_mask_prompt")
    tracer.log(f"tracker_mask_prompt: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")


def _mask_prompt_cases(inputs: TrackerInputs):
    for b in (1, 2):
        yield inputs.features(b) + inputs.masks(b), f"B={b}"
    r, dev, dtype = inputs.resolution, inputs.tracer.device, inputs.tracer.dtype
    yield inputs.features(1) + (torch.zeros(1, 1, r, r, device=dev, dtype=dtype),), "empty mask"


def export_memory_encoders(tracer: Tracer, tracker, inputs: TrackerInputs) -> None:
    """memory_encoder (mask from the model) / memory_encoder_points (from a prompt): traced at batch
    2, checked at batches 1 and 3."""
    for from_points, name in ((False, "memory_encoder"), (True, "memory_encoder_points")):
        t0 = time.time()
        piece = MemoryEncoderPiece(tracker, from_points).eval()
        traced = tracer.trace(piece, inputs.memory_inputs(2))
        diff = tracer.check(name, traced, piece, ((inputs.memory_inputs(b), f"B={b}") for b in (1, 3)))
        tracer.save(traced, name)
        tracer.log(f"{name}: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")


def export_memory_attention(tracer: Tracer, tracker, inputs: TrackerInputs) -> None:
    """memory_attention, scripted: checked against transformers' modules at several memory frame and
    pointer counts, with its first self-attention computed inside and handed in, and no_memory."""
    t0 = time.time()
    cfg = tracker.config
    randn, dev, c, g = tracer.randn, tracer.device, inputs.c, inputs.g
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
        diff = max(diff, tracer.compare("memory_attention", got, want, f"{frames} memory frames, {ptrs} pointers"))
        shared = script(top, top_pos, mem, mem_pos, offsets, pointers, poff, max_ptr, script.first_self_attention(top, top_pos))
        diff = max(diff, tracer.compare("memory_attention", shared, want, f"{frames} memory frames, {ptrs} pointers, shared first self-attention"))
    top = randn(1, c, g, g)
    want = (top.flatten(2).permute(2, 0, 1) + tracker.no_memory_embedding).permute(1, 2, 0).view(1, c, g, g)
    diff = max(diff, tracer.compare("memory_attention.no_memory", script.no_memory(top), want, "no memory"))
    tracer.save(script, "memory_attention")
    tracer.log(f"memory_attention (scripted): scripted vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")


def export_interactive_decoders(tracer: Tracer, tracker, inputs: TrackerInputs) -> None:
    """tracker_interactive_multi / _single (interactive segmentation on an image): traced on a batch of
    2 (one row with a mask input, one without), checked on 1 point, 3 points, a box with a point, the
    no-prompt padding point, and batches of 1 and 3 with and without mask inputs."""
    for multimask, name in ((True, "tracker_interactive_multi"), (False, "tracker_interactive_single")):
        t0 = time.time()
        piece = InteractiveDecodePiece(tracker, multimask).eval()
        traced = tracer.trace(piece, _interactive_inputs(inputs, 2, 2, (True, False)))
        diff = tracer.check(name, traced, piece, _interactive_cases(inputs))
        tracer.save(traced, name)
        tracer.log(f"{name}: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")


def _interactive_inputs(inputs: TrackerInputs, b: int, n: int, has_mask, box: bool = False) -> tuple:
    s0, s1, top = inputs.features(b)
    m = 4 * inputs.g
    mask = inputs.tracer.randn(b, 1, m, m, scale=5.0)
    flags = torch.tensor(has_mask, dtype=torch.bool, device=inputs.tracer.device)
    points, labels = inputs.points(b, n, box=box)
    if box and n >= 3:  # box corners after the points, as the addon sends them
        points, labels = points.roll(-2, dims=2), labels.roll(-2, dims=2)
    return (s0, s1, top, points, labels, mask, flags)


def _interactive_cases(inputs: TrackerInputs):
    yield _interactive_inputs(inputs, 1, 1, (False,)), "1 point"
    yield _interactive_inputs(inputs, 1, 3, (True,)), "3 points, mask input"
    yield _interactive_inputs(inputs, 1, 3, (False,), box=True), "a box and a point"
    yield _interactive_inputs(inputs, 3, 2, (False, True, False)), "B=3, mixed mask inputs"
    s0, s1, top, _, _, mask, flags = _interactive_inputs(inputs, 1, 1, (True,))
    dev, dtype = inputs.tracer.device, inputs.tracer.dtype
    no_prompt = (torch.zeros(1, 1, 1, 2, device=dev, dtype=dtype), -torch.ones(1, 1, 1, dtype=torch.int32, device=dev))
    yield (s0, s1, top) + no_prompt + (mask, flags), "mask input only"


def video_section(tracker, inputs: TrackerInputs) -> dict:
    """The manifest's ``video`` section: the tracker's shapes and the config its C++ loop follows."""
    cfg = tracker.config
    return {
        "hidden_size": inputs.c,
        "memory_dim": int(tracker.mem_dim),
        "feature_size": inputs.g,
        "low_res_mask_size": int(list(cfg.vision_config.backbone_feature_sizes[0])[0]),
        "s0_shape": inputs.s0_shape,
        "s1_shape": inputs.s1_shape,
        "num_maskmem": int(cfg.num_maskmem),
        "max_cond_frame_num": int(cfg.max_cond_frame_num),
        "max_object_pointers": int(cfg.max_object_pointers_in_encoder),
        "multimask_output_in_sam": bool(cfg.multimask_output_in_sam),
        "multimask_min_pt_num": int(cfg.multimask_min_pt_num),
        "multimask_max_pt_num": int(cfg.multimask_max_pt_num),
        "multimask_output_for_tracking": bool(cfg.multimask_output_for_tracking),
    }
