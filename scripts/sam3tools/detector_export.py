"""The detector half of a bundle (the image pieces): each stage builds its pieces over the loaded
Sam3Model, traces them, checks them against eager on fresh inputs and saves them (pieces_*.py hold
the modules and their signatures, trace.py the tracing and checking).

The stages run in a fixed order from one generator (Tracer, seeded 0), so a bundle's trace inputs,
and with them its files, are the same from run to run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .detr_parts import DetrFirstBlock
from .errors import ExportError
from .pieces_head import HeadEager, HeadTextBoxesPiece, HeadTextPiece, with_masks
from .pieces_pixel import PixelDecoderPiece, PixelSkipPiece, PixelSplitPiece
from .pieces_text import TextEncoderPiece
from .pieces_vision import VisionBackbonePiece, VisionEncoderEager, VisionNeckPiece
from .tokenizer import TEXT_MAX_LENGTH, VISUAL_PROMPT, tokenize
from .trace import Tracer

PAD_BOX_LABEL = -10
# Each stage checks on other batch sizes (and prompt lengths, box counts) than it traced with.
PIXEL_CHECKS = ((1, 3), (1, 1), (2, 2))  # (features batch, visual batch)
HEAD_BOX_CHECKS = (  # (prompts, rows of (cx, cy, w, h, label))
    (
        ["dog", VISUAL_PROMPT, "the red car on the left"],
        [
            [(0.2, 0.3, 0.1, 0.1, 1), (0.9, 0.9, 0.4, 0.5, 0), (0, 0, 0, 0, PAD_BOX_LABEL)],
            [(0.5, 0.5, 1.0, 1.0, 1), (0.05, 0.95, 0.2, 0.3, 1), (0.5, 0.4, 0.01, 0.01, 0)],
            [(0.6, 0.6, 0.3, 0.3, 0), (0, 0, 0, 0, PAD_BOX_LABEL), (0, 0, 0, 0, PAD_BOX_LABEL)],
        ],
    ),
    (["a person"], [[(0.4, 0.45, 0.5, 0.6, 1)]]),
)


@dataclass
class DetectorFacts:
    """What the manifest records of the detector's pieces."""

    grid: int
    backbone_width: int
    fpn_shapes: list
    mask_size: int
    hidden_size: int


def export_detector(tracer: Tracer, model, tokenizer, resolution: int) -> DetectorFacts:
    """Writes the detector's pieces (call under torch.no_grad())."""
    grid = resolution // int(model.config.vision_config.backbone_config.patch_size)
    backbone_width, fpn_shapes, p2_one = export_vision(tracer, model, resolution, grid)
    text_piece, hidden_size = export_text(tracer, model, tokenizer)
    pixel, mask_size = export_pixel_decoder(tracer, model, fpn_shapes)
    export_pixel_split(tracer, model, fpn_shapes)
    inputs = HeadInputs(tracer, model, tokenizer, text_piece, fpn_shapes, p2_one)
    export_head_text(tracer, model, inputs, pixel, fpn_shapes)
    export_head_text_boxes(tracer, model, inputs, pixel, fpn_shapes)
    return DetectorFacts(grid, backbone_width, fpn_shapes, mask_size, hidden_size)


def export_vision(tracer: Tracer, model, resolution: int, grid: int):
    """vision_backbone + vision_neck: traced at batch 2 and checked at batch 1, together against the
    eager vision encoder. Returns the ViT width, the FPN shapes and a batch-1 p2 (the position
    encoding does not depend on the image)."""
    t0 = time.time()
    backbone = VisionBackbonePiece(model.vision_encoder).eval()
    neck = VisionNeckPiece(model, grid).eval()
    x_trace = tracer.randn(2, 3, resolution, resolution)
    tracer.log(f"tracing vision_backbone at {resolution}x{resolution}, batch 2")
    traced_backbone = tracer.trace(backbone, (x_trace,))
    hidden = traced_backbone(x_trace)[0]
    tracer.log("tracing vision_neck")
    traced_neck = tracer.trace(neck, (hidden,))
    trace_out = traced_neck(hidden)
    fpn_shapes = [list(t.shape[1:]) for t in trace_out[:3]]
    p2_one = trace_out[3][:1]
    del trace_out, x_trace, hidden
    x_check = tracer.randn(1, 3, resolution, resolution)
    hidden = traced_backbone(x_check)[0]
    diff = tracer.compare("vision_backbone", (hidden,), backbone(x_check), "batch 1")
    diff = max(diff, tracer.compare("vision_neck", traced_neck(hidden), VisionEncoderEager(model)(x_check), "backbone + neck vs the eager vision encoder, batch 1"))
    backbone_width = int(hidden.shape[-1])
    del x_check, hidden
    tracer.save(traced_backbone, "vision_backbone")
    tracer.save(traced_neck, "vision_neck")
    tracer.log(f"vision_backbone + vision_neck: vit {grid}x{grid}x{backbone_width}, fpn {fpn_shapes}, traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")
    return backbone_width, fpn_shapes, p2_one


def export_text(tracer: Tracer, model, tokenizer):
    """text_encoder: traced at N=2, L=32; checked at N=3, L=32 and N=1, L=16. Returns the eager piece
    (the heads' checks read its features) and the text width."""
    t0 = time.time()
    piece = TextEncoderPiece(model).eval()
    ids, mask = (t.to(tracer.device) for t in tokenize(tokenizer, ["a photo of a cat", VISUAL_PROMPT]))
    tracer.log("tracing text_encoder")
    traced = tracer.trace(piece, (ids, mask))

    def cases():
        for prompts, length in ((["the red car on the left", "Person, riding a BIKE!!", " ".join(["word"] * 60)], TEXT_MAX_LENGTH), (["dog"], 16)):
            yield tuple(t.to(tracer.device) for t in tokenize(tokenizer, prompts, length)), f"N={len(prompts)}, L={length}"

    diff = tracer.check("text_encoder", traced, piece, cases())
    hidden = int(piece(ids, mask)[0].shape[-1])
    tracer.save(traced, "text_encoder")
    tracer.log(f"text_encoder: hidden {hidden}, traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")
    return piece, hidden


def _pixel_cases(tracer: Tracer, fpn_shapes, channels_last: bool = False):
    """(f0, f1, visual) per PIXEL_CHECKS; with channels_last, the batch-1 features in the layout the
    neck hands them over in (the plain layout is checked at batch 2)."""
    for fb, b in PIXEL_CHECKS:
        f0, f1, visual = tracer.randn(fb, *fpn_shapes[0]), tracer.randn(fb, *fpn_shapes[1]), tracer.randn(b, *fpn_shapes[2])
        if channels_last and fb == 1:
            f0, f1 = (t.contiguous(memory_format=torch.channels_last) for t in (f0, f1))
        yield (f0, f1, visual), f"features batch {fb}, visual batch {b}"


def _eager_pixel_decoder(model):
    """Sam3PixelDecoder.forward itself, its skip features expanded to the visual batch."""
    decoder = model.mask_decoder.pixel_decoder

    def run(f0, f1, visual):
        b = visual.shape[0]
        return decoder([f0.expand(b, -1, -1, -1), f1.expand(b, -1, -1, -1), visual])

    return run


def export_pixel_decoder(tracer: Tracer, model, fpn_shapes):
    """pixel_decoder: traced with batch-1 skip features under a batch-2 visual (one image, two
    prompts: how the addon calls it); checked against Sam3PixelDecoder.forward with the features
    expanded (B=3), and with per-row features (B=1, and B=2 as the heads' checks do). Returns the
    traced piece (the heads' checks run it) and the mask size."""
    t0 = time.time()
    width = fpn_shapes[2][0]
    pixel = PixelDecoderPiece(model).eval()
    tracer.log("tracing pixel_decoder")
    f0, f1 = tracer.randn(1, *fpn_shapes[0]), tracer.randn(1, *fpn_shapes[1])
    traced = tracer.trace(pixel, (f0, f1, tracer.randn(2, *fpn_shapes[2])))
    diff = tracer.check("pixel_decoder", traced, _eager_pixel_decoder(model), _pixel_cases(tracer, fpn_shapes))
    tracer.save(traced, "pixel_decoder")
    mask_size = fpn_shapes[0][-1]
    tracer.log(f"pixel_decoder: {width} channels, {mask_size}x{mask_size}, traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")
    return traced, mask_size


def export_pixel_split(tracer: Tracer, model, fpn_shapes) -> None:
    """pixel_skip (once per image) + pixel_split (per prompt): traced as the addon calls them
    (batch-1 image, batch-2 visual), checked together against the eager decoder."""
    t0 = time.time()
    tracer.log("tracing pixel_skip, pixel_split")
    f0, f1 = tracer.randn(1, *fpn_shapes[0]), tracer.randn(1, *fpn_shapes[1])
    traced_skip = tracer.trace(PixelSkipPiece(model).eval(), (f0, f1))
    s0, s1 = traced_skip(f0, f1)
    traced_split = tracer.trace(PixelSplitPiece(model).eval(), (s0, s1, tracer.randn(2, *fpn_shapes[2])))

    def skip_then_split(f0, f1, visual):
        return traced_split(*traced_skip(f0, f1), visual)

    cases = ((args, f"{what}, vs Sam3PixelDecoder") for args, what in _pixel_cases(tracer, fpn_shapes, channels_last=True))
    diff = tracer.check("pixel_split", skip_then_split, _eager_pixel_decoder(model), cases)
    tracer.save(traced_skip, "pixel_skip")
    tracer.save(traced_split, "pixel_split")
    tracer.log(f"pixel_skip + pixel_split: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")


class HeadInputs:
    """Inputs for the heads' traces and checks: random FPN features, the real p2, e0 as vision_neck
    makes it, and the eager text encoder's features of real prompts."""

    def __init__(self, tracer: Tracer, model, tokenizer, text_piece, fpn_shapes, p2_one):
        self.tracer = tracer
        self.tokenizer = tokenizer
        self.text_piece = text_piece
        self.fpn_shapes = fpn_shapes
        self.p2_one = p2_one
        self.first_block = DetrFirstBlock(model.detr_encoder.layers[0]).eval()

    def __call__(self, prompts: list[str]) -> tuple:
        """(f0, f1, f2, p2, e0, text_features, text_mask) for one prompt a row."""
        dev = self.tracer.device
        b = len(prompts)
        feats = tuple(self.tracer.randn(b, *shape) for shape in self.fpn_shapes)
        p2 = self.p2_one.expand(b, -1, -1, -1).contiguous()
        e0 = self.first_block(feats[2], p2)  # what vision_neck hands the heads with the features
        i, m = tokenize(self.tokenizer, prompts)
        text_features = self.text_piece(i.to(dev), m.to(dev))[0]
        return feats + (p2, e0, text_features, m.to(dev).bool())

    def boxes(self, rows: list[list[tuple]]):
        """rows of (cx, cy, w, h, label); label -10 marks padding (box -10,-10,0,0 as the processor pads)."""
        b = torch.tensor([[r[:4] if r[4] != PAD_BOX_LABEL else (-10.0, -10.0, 0.0, 0.0) for r in row] for row in rows])
        lab = torch.tensor([[r[4] for r in row] for row in rows], dtype=torch.long)
        return b.to(device=self.tracer.device, dtype=self.tracer.dtype), lab.to(self.tracer.device)


def _export_head(tracer: Tracer, name: str, piece, eager, trace_inputs, cases, pixel, fpn_shapes) -> float:
    """Traces a head on ``trace_inputs()`` (its inputs: no f0/f1) and checks it, with the traced pixel
    decoder run on its visual output and the mask factors multiplied out, against the untouched eager
    head on ``cases``."""
    tracer.log(f"tracing {name}")
    traced = tracer.trace(piece, trace_inputs())

    def with_pixel_decoder(*args):
        got = traced(*args[2:])
        if tuple(got[5].shape[1:]) != tuple(fpn_shapes[2]):
            raise ExportError(f"{name}'s visual output is {list(got[5].shape)}, expected [B, *{fpn_shapes[2]}]")
        return with_masks(got, pixel, *args[:2])

    diff = tracer.check(name, with_pixel_decoder, eager, cases)
    tracer.save(traced, name)
    return diff


def export_head_text(tracer: Tracer, model, inputs: HeadInputs, pixel, fpn_shapes) -> None:
    """head_text: traced at B=2, checked at B=3 and B=1."""
    t0 = time.time()
    piece = HeadTextPiece(model).eval()
    eager = HeadEager(model, with_boxes=False).eval()
    cases = (
        (inputs(prompts), f"B={len(prompts)}, + pixel_decoder, vs the untouched eager head")
        for prompts in (["dog", VISUAL_PROMPT, " ".join(["word"] * 60)], ["a person"])
    )
    trace_prompts = ["a photo of a cat", "the red car on the left"]
    diff = _export_head(tracer, "head_text", piece, eager, lambda: inputs(trace_prompts)[2:], cases, pixel, fpn_shapes)
    tracer.log(f"head_text: traced (+ pixel_decoder) vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")


def export_head_text_boxes(tracer: Tracer, model, inputs: HeadInputs, pixel, fpn_shapes) -> None:
    """head_text_boxes: traced at B=2, K=2; checked at B=3, K=3 and B=1, K=1."""
    t0 = time.time()
    piece = HeadTextBoxesPiece(model).eval()
    eager = HeadEager(model, with_boxes=True).eval()
    trace_boxes = [[(0.5, 0.5, 0.3, 0.4, 1), (0, 0, 0, 0, PAD_BOX_LABEL)], [(0.3, 0.6, 0.2, 0.2, 1), (0.7, 0.2, 0.4, 0.3, 0)]]
    cases = (
        (inputs(prompts) + inputs.boxes(rows), f"B={len(prompts)}, K={len(rows[0])}, + pixel_decoder, vs the untouched eager head")
        for prompts, rows in HEAD_BOX_CHECKS
    )
    trace_prompts = ["a photo of a cat", VISUAL_PROMPT]
    diff = _export_head(tracer, "head_text_boxes", piece, eager, lambda: inputs(trace_prompts)[2:] + inputs.boxes(trace_boxes), cases, pixel, fpn_shapes)
    tracer.log(f"head_text_boxes: traced vs eager max diff {diff:.3g} ({time.time() - t0:.1f} s)")
