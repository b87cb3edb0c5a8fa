"""Tests of the Python build tools: roi_align shim, checkpoint refusals, export round trip, tokenizer.

Run from the repository root: ``.venv/bin/python -m unittest discover -s tests/python -t .``
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

import torch  # noqa: E402
from torch import nn  # noqa: E402

# Tiny models gain nothing from threads, and two OpenMP threads on a 2-core machine that is also
# running something else spin-wait badly (several times slower): one thread keeps the suite fast.
torch.set_num_threads(1)


def jit_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 nudges towards torch.export
        return torch.jit.load(path)

from sam3tools import compat  # noqa: E402

TOKEN_PROMPTS = [
    "a cat",
    "A CAT",
    "the Red Car on the LEFT",
    "person riding a bike, wearing a helmet.",
    "dog!!!",
    "what's this? it's a dog's bowl; they're here",
    "hello-world (test) [brackets] {braces}",
    "100 apples and 3.5 oranges",
    "ünïcödé café naïve",
    "日本語のテキスト",
    "emoji 🐱🐶 test",
    "Ελληνικά και русский",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines",
    "",
    " ",
    "visual",
    "<|startoftext|> literal special tokens <|endoftext|>",
    "a" * 300,
    " ".join(["word"] * 40),
    " ".join(f"token{i}" for i in range(50)),
    "mixed CASE ÀÉÎÕÜ ß",
    "quotes \"double\" and 'single'",
    "x",
]


def run_main(module, argv):
    """Runs a CLI's main() in-process; returns (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = module.main(argv)
    return code, err.getvalue()


class RoiAlignTest(unittest.TestCase):
    def test_matches_torchvision_port(self):
        worst = compat.check(verbose=False, seed=1)
        self.assertLessEqual(worst, 1e-5)

    def test_shim_installed_in_transformers(self):
        from transformers.models.sam3 import modeling_sam3

        compat.install_roi_align_shim()
        self.assertIs(modeling_sam3.torchvision.ops.roi_align, compat.roi_align)


class SubpixelTest(unittest.TestCase):
    """The FPN levels' sub-pixel form (bundle format 4; channels-last in format 5) against transformers' own Sam3FPNLayer."""

    def test_matches_fpn_layers(self):
        from transformers.models.sam3.modeling_sam3 import Sam3FPNLayer

        from sam3tools.subpixel import ComposedFPNLevel, PlainFPNLevel, fast_fpn_level

        torch.manual_seed(0)
        x = torch.randn(2, 16, 5, 7)  # odd, non-square: every border of every phase is exercised
        with torch.no_grad():
            for scale in (4.0, 2.0):
                layer = Sam3FPNLayer(16, 12, scale).eval()
                for p in layer.parameters():  # biases too: they must not leak into the padding
                    p.normal_()
                for post in (None, nn.Conv2d(12, 5, 1)):
                    want = layer(x) if post is None else post(layer(x))
                    fast = fast_fpn_level(layer, post)
                    self.assertIsInstance(fast, ComposedFPNLevel)
                    got = fast(x)
                    self.assertEqual(got.shape, want.shape)
                    err = ((got - want).abs().max() / want.abs().max()).item()
                    self.assertLess(err, 1e-5, f"scale {scale}, post {post is not None}")
                    # The channels-last form (the detector's 4x and 2x levels): the same values.
                    got_cl = fast_fpn_level(layer, post, channels_last=True)(x)
                    self.assertTrue(got_cl.is_contiguous(memory_format=torch.channels_last))
                    self.assertTrue(torch.equal(got_cl, got), f"scale {scale}, post {post is not None}, channels-last")
            # Levels without a transposed convolution run as they are.
            for scale in (1.0, 0.5):
                layer = Sam3FPNLayer(16, 12, scale).eval()
                fast = fast_fpn_level(layer)
                self.assertIsInstance(fast, PlainFPNLevel)
                self.assertTrue(torch.equal(fast(x), layer(x)))

    def test_nearest_up_conv_add(self):
        """The pixel decoder's split stage (bundle format 6): conv3x3(up2_nearest(x)) + skip at the low
        resolution, against F.interpolate and the convolution itself, with a batch-1 skip under a
        batch-3 x (one image, three prompts) and with per-row skips."""
        import torch.nn.functional as F

        from sam3tools.subpixel import NearestUpConvAdd

        torch.manual_seed(1)
        conv = nn.Conv2d(12, 12, 3, padding=1, bias=False)
        with torch.no_grad():
            conv.weight.normal_()
            up = NearestUpConvAdd(conv)
            x = torch.randn(3, 12, 5, 7)  # odd, non-square: every border of every phase
            for skip in (torch.randn(1, 12, 10, 14), torch.randn(3, 12, 10, 14).contiguous(memory_format=torch.channels_last)):
                want = conv(F.interpolate(x, scale_factor=2.0, mode="nearest")) + skip
                got = up(x, skip)
                self.assertEqual(got.shape, want.shape)
                self.assertTrue(got.is_contiguous(memory_format=torch.channels_last))
                err = ((got - want).abs().max() / want.abs().max()).item()
                self.assertLess(err, 1e-5, f"skip batch {skip.shape[0]}")
        with self.assertRaises(ValueError):
            NearestUpConvAdd(nn.Conv2d(12, 12, 3, padding=0))


class QuietTorchTest(unittest.TestCase):
    def test_quiet_torch_turns_nnpack_off(self):
        from sam3tools.cli import quiet_torch

        before = torch._C._get_nnpack_enabled()
        try:
            torch.backends.nnpack.set_flags(True)
            quiet_torch()
            self.assertFalse(torch._C._get_nnpack_enabled())
            # Convolutions still run (the default CPU path) and print nothing about NNPACK.
            x = torch.randn(16, 3, 8, 8)
            self.assertEqual(tuple(torch.nn.functional.conv2d(x, torch.randn(4, 3, 3, 3)).shape), (16, 4, 6, 6))
        finally:
            torch.backends.nnpack.set_flags(before)

    def test_tools_turn_nnpack_off_before_any_model_work(self):
        # Every tool that runs torch calls quiet_torch (directly or through quiet_transformers).
        import re

        def uses_torch(text: str) -> bool:
            if re.search(r"^\s*import torch", text, re.M):
                return True
            modules = [m for m in re.findall(r"from sam3tools\.(\w+) import", text) if m != "cli"]
            return any("import torch" in (SCRIPTS / "sam3tools" / f"{m}.py").read_text(encoding="utf-8") for m in modules)

        checked = 0
        for script in sorted(SCRIPTS.glob("*.py")):
            text = script.read_text(encoding="utf-8")
            if not uses_torch(text):
                continue
            checked += 1
            with self.subTest(script=script.name):
                self.assertRegex(text, r"quiet_(torch|transformers)\(", f"{script.name} does not turn NNPACK off")
        self.assertGreaterEqual(checked, 5, "the scan found the tools")


class ExportTest(unittest.TestCase):
    """One tiny checkpoint (seed 7, 112 px) and its bundle, shared by the tests below."""

    @classmethod
    def setUpClass(cls):
        from transformers.utils import logging as hf_logging

        from sam3tools.checkpoint import make_checkpoint
        from sam3tools.export import export_bundle

        hf_logging.set_verbosity_error()
        cls.tmp = tempfile.mkdtemp(prefix="sam3-tools-test-")
        cls.checkpoint = os.path.join(cls.tmp, "checkpoint")
        cls.bundle = os.path.join(cls.tmp, "bundle")
        make_checkpoint(cls.checkpoint, seed=7, image_size=112, preset="tiny")
        cls.manifest = export_bundle(cls.checkpoint, cls.bundle)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ refusals

    def assertRefused(self, checkpoint, pattern):
        import export_sam3

        out = os.path.join(self.tmp, "refused-bundle")
        code, err = run_main(export_sam3, ["--checkpoint", checkpoint, "--out", out])
        self.assertEqual(code, 2, err)
        last = err.strip().splitlines()[-1]
        self.assertTrue(last.startswith("export_sam3: "), err)
        self.assertRegex(last, pattern)
        self.assertFalse(os.path.exists(os.path.join(out, "manifest.json")))

    def copy_checkpoint(self, name):
        dst = os.path.join(self.tmp, name)
        shutil.copytree(self.checkpoint, dst)
        return dst

    def test_refuses_missing_folder(self):
        self.assertRefused(os.path.join(self.tmp, "does-not-exist"), r"checkpoint folder not found")

    def test_refuses_folder_without_config(self):
        empty = os.path.join(self.tmp, "empty")
        os.makedirs(empty, exist_ok=True)
        self.assertRefused(empty, r"no config\.json")

    def test_refuses_truncated_weights(self):
        bad = self.copy_checkpoint("truncated")
        weights = os.path.join(bad, "model.safetensors")
        with open(weights, "r+b") as fh:
            fh.truncate(os.path.getsize(weights) // 2)
        self.assertRefused(bad, r"model\.safetensors is corrupt")

    def test_refuses_garbage_weights(self):
        bad = self.copy_checkpoint("garbage")
        with open(os.path.join(bad, "model.safetensors"), "wb") as fh:
            fh.write(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\0" * 64)
        self.assertRefused(bad, r"model\.safetensors is corrupt")

    def test_refuses_other_model_type(self):
        bad = self.copy_checkpoint("other-type")
        path = os.path.join(bad, "config.json")
        with open(path) as fh:
            config = json.load(fh)
        config["model_type"] = "sam2"
        with open(path, "w") as fh:
            json.dump(config, fh)
        self.assertRefused(bad, r"'sam2' model, not SAM 3")

    def test_refuses_missing_tokenizer(self):
        bad = self.copy_checkpoint("no-tokenizer")
        os.remove(os.path.join(bad, "tokenizer.json"))
        self.assertRefused(bad, r"no tokenizer")

    def test_refuses_weights_not_matching_config(self):
        from safetensors.torch import load_file, save_file

        bad = self.copy_checkpoint("missing-keys")
        weights = os.path.join(bad, "model.safetensors")
        tensors = load_file(weights)
        del tensors[next(k for k in tensors if k.startswith("detector_model.mask_decoder."))]
        save_file(tensors, weights, metadata={"format": "pt"})
        self.assertRefused(bad, r"do not match its config: 1 missing")

    def test_refusal_exit_code_from_a_real_process(self):
        # A hub id that cannot be fetched (offline mode makes this quick and deterministic).
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
        proc = subprocess.run(
            [sys.executable, str(SCRIPTS / "export_sam3.py"), "--checkpoint", "sam3-tools-test/no-such-model", "--out", os.path.join(self.tmp, "x")],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertRegex(proc.stderr.strip().splitlines()[-1], r"^export_sam3: cannot fetch 'sam3-tools-test/no-such-model'")

    def test_refuses_bundle_over_checkpoint(self):
        import export_sam3

        code, err = run_main(export_sam3, ["--checkpoint", self.checkpoint, "--out", self.checkpoint])
        self.assertEqual(code, 2, err)
        self.assertIn("must not be the checkpoint folder", err)

    def test_replacing_a_bundle_removes_the_pieces_it_no_longer_has(self):
        """Exporting over an older bundle removes what only the old manifest listed (a format-1
        vision_encoder.pt would otherwise stay behind: 1.8 GB at full size), nothing else."""
        from sam3tools.export import export_bundle

        out = os.path.join(self.tmp, "replaced-bundle")
        shutil.copytree(self.bundle, out)
        with open(os.path.join(out, "manifest.json")) as fh:
            old = json.load(fh)
        old["files"]["vision_encoder"] = {"path": "vision_encoder.pt", "sha256": "0" * 64, "bytes": 3}
        old["files"]["escape"] = {"path": "../outside.txt", "sha256": "0" * 64, "bytes": 3}
        with open(os.path.join(out, "manifest.json"), "w") as fh:
            json.dump(old, fh)
        for name in ("vision_encoder.pt", "notes.txt"):
            with open(os.path.join(out, name), "w") as fh:
                fh.write("old")
        outside = os.path.join(self.tmp, "outside.txt")
        with open(outside, "w") as fh:
            fh.write("not the bundle's")
        export_bundle(self.checkpoint, out)
        self.assertFalse(os.path.exists(os.path.join(out, "vision_encoder.pt")))
        self.assertTrue(os.path.exists(os.path.join(out, "notes.txt")), "a file the old manifest did not list stays")
        self.assertTrue(os.path.exists(outside), "a path outside the bundle is never touched")
        with open(os.path.join(out, "manifest.json")) as fh:
            self.assertEqual(set(json.load(fh)["files"]), set(self.manifest["files"]))

    def test_loads_plain_sam3_layout_like_the_video_one(self):
        """The tiny checkpoint has facebook/sam3's layout (sam3_video: detector + tracker, prefixed
        weights); an image-only sam3 folder with the same detector weights loads identically and
        exports without the tracker."""
        from safetensors.torch import load_file, save_file

        from sam3tools.checkpoint_io import load_model, model_image_size, preprocessing, read_config
        from sam3tools.tracker_export import has_tracker

        plain = self.copy_checkpoint("plain-layout")
        with open(os.path.join(plain, "config.json")) as fh:
            video_config = json.load(fh)
        self.assertEqual(video_config["model_type"], "sam3_video")
        self.assertTrue(has_tracker(video_config))
        detector = dict(video_config["detector_config"], model_type="sam3", architectures=["Sam3Model"])
        with open(os.path.join(plain, "config.json"), "w") as fh:
            json.dump(detector, fh)
        weights = os.path.join(plain, "model.safetensors")
        prefix = "detector_model."
        tensors = {k[len(prefix):]: v for k, v in load_file(weights).items() if k.startswith(prefix)}
        save_file(tensors, weights, metadata={"format": "pt"})

        raw = read_config(plain)
        self.assertFalse(has_tracker(raw))
        self.assertEqual(preprocessing(plain, model_image_size(raw))["resolution"], 112)
        loaded, _ = load_model(plain)
        original, _ = load_model(self.checkpoint)
        want = original.state_dict()
        got = loaded.state_dict()
        self.assertEqual(set(got), set(want))
        for key, value in want.items():
            self.assertTrue(torch.equal(got[key], value), key)

    # ------------------------------------------------------------------ bundle

    def test_manifest(self):
        from sam3tools.checkpoint_io import sha256_file

        with open(os.path.join(self.bundle, "manifest.json")) as fh:
            m = json.load(fh)
        self.assertEqual(m, self.manifest)
        self.assertEqual((m["format"], m["format_version"]), ("sam3-bundle", 8))
        self.assertEqual(m["source"]["model_type"], "sam3")
        self.assertEqual((m["device"], m["dtype"]), ("cpu", "float32"))
        self.assertEqual((m["resolution"], m["patch_size"], m["mask_size"]), (112, 14, 32))
        self.assertEqual((m["num_queries"], m["hidden_size"]), (20, 128))
        self.assertEqual((m["video"]["hidden_size"], m["video"]["memory_dim"], m["video"]["feature_size"]), (128, 64, 8))
        self.assertEqual(m["vit"], {"grid": 8, "hidden_size": 32})
        # Bundle format 7: the concept-tracking settings, Sam3VideoConfig's defaults for this checkpoint
        # (tests/python/test_concept.py checks that changed values are recorded).
        from transformers import Sam3VideoConfig

        from sam3tools.concept_config import CONCEPT_FIELDS

        self.assertEqual(m["video"]["concept"], {k: getattr(Sam3VideoConfig, k) for k in CONCEPT_FIELDS})
        for name in ("tracker_neck", "tracker_decode_multi", "tracker_decode_single", "tracker_mask_prompt", "memory_encoder", "memory_encoder_points", "memory_attention",
                     "tracker_interactive_multi", "tracker_interactive_single"):
            self.assertIn(name, m["files"])
        self.assertEqual(m["text"], {"max_length": 32, "pad_token_id": 49407, "visual_prompt": "visual"})
        self.assertEqual(m["normalization"], {"mean": [127.5] * 3, "std": [127.5] * 3})
        self.assertEqual(m["fpn_shapes"], [[128, 32, 32], [128, 16, 16], [128, 8, 8]])
        self.assertEqual(
            set(m["files"]),
            {"vision_backbone", "vision_neck", "text_encoder", "head_text", "head_text_boxes", "pixel_decoder", "pixel_skip", "pixel_split", "tokenizer", "tracker_neck", "tracker_decode_multi",
             "tracker_decode_single", "tracker_mask_prompt", "memory_encoder", "memory_encoder_points", "memory_attention",
             "tracker_interactive_multi", "tracker_interactive_single"},
        )
        for entry in m["files"].values():
            path = os.path.join(self.bundle, entry["path"])
            self.assertEqual(entry["bytes"], os.path.getsize(path))
            self.assertEqual(entry["sha256"], sha256_file(path))
        self.assertEqual(sorted(os.listdir(self.bundle)), sorted([e["path"] for e in m["files"].values()] + ["manifest.json"]))

    def test_pieces_hold_only_their_own_weights(self):
        names, full = {}, {}
        for piece in ("vision_backbone", "vision_neck", "text_encoder", "head_text", "head_text_boxes", "pixel_decoder", "pixel_skip", "pixel_split", "tracker_neck"):
            module = jit_load(os.path.join(self.bundle, f"{piece}.pt"))
            full[piece] = {n for n, _ in module.named_parameters()}
            names[piece] = {n.split(".")[0] for n in full[piece]}
        # One ViT in the bundle: the tracker's neck reads vision_backbone's output.
        self.assertEqual(names["vision_backbone"], {"backbone"})
        # The first DETR encoder layer's self-attention block runs once per image, in the neck; the
        # heads hold the rest of that layer and none of its self-attention weights.
        self.assertEqual(names["vision_neck"], {"levels", "detr_first"})
        # Three FPN levels (Sam3Model drops the 0.5x one): 4x and 2x in sub-pixel form, 1x as it is.
        self.assertEqual({n.split(".")[1] for n in full["vision_neck"] if n.startswith("levels.")}, {"0", "1", "2"})
        self.assertIn("levels.0.sub.kernel", full["vision_neck"])
        self.assertIn("levels.1.sub.kernel", full["vision_neck"])
        self.assertEqual({n.split(".")[1] for n in full["vision_neck"] if n.startswith("detr_first.")}, {"layer_norm1", "self_attn"})
        for head in ("head_text", "head_text_boxes"):
            first = {n.split(".")[3] for n in full[head] if n.startswith("detr_encoder.layers.0.")}
            self.assertEqual(first, {"cross_attn", "layer_norm2", "mlp", "layer_norm3"}, head)
        # conv_s0 / conv_s1 are folded into the tracker's 4x and 2x levels.
        self.assertEqual(names["tracker_neck"], {"s0", "s1", "top"})
        self.assertIn("s0.sub.kernel", full["tracker_neck"])
        # The heads stop before the pixel decoder, which is its own piece; no semantic head anywhere.
        for head in ("head_text", "head_text_boxes"):
            self.assertFalse(any("semantic_projection" in n for n in full[head]), head)
            self.assertFalse(any("pixel_decoder" in n for n in full[head]), head)
        self.assertEqual(names["pixel_decoder"], {"pixel_decoder"})
        self.assertEqual({n.split(".")[1] for n in full["pixel_decoder"]}, {"conv_layers", "norms"})
        # Its split form: the convolutions (with their biases) for the skip half, the composed
        # up-sampling kernels (no bias: it is in the skip half) and the norms for the rest.
        self.assertEqual(full["pixel_skip"], {f"conv_layers.{i}.{w}" for i in (0, 1) for w in ("weight", "bias")})
        self.assertEqual(full["pixel_split"], {"up.0.kernel", "up.1.kernel"} | {f"norms.{i}.{w}" for i in (0, 1) for w in ("weight", "bias")})
        self.assertEqual(names["text_encoder"], {"text_encoder", "text_projection"})
        head = {"detr_encoder", "detr_decoder", "mask_decoder", "dot_product_scoring"}
        self.assertEqual(names["head_text"], head)
        self.assertEqual(names["head_text_boxes"], head | {"geometry_encoder"})

    def test_traced_pieces_reproduce_eager_model(self):
        from transformers import AutoTokenizer

        from sam3tools.checkpoint_io import load_model

        model, _ = load_model(self.checkpoint)
        tokenizer = AutoTokenizer.from_pretrained(self.checkpoint)
        pieces = {
            p: jit_load(os.path.join(self.bundle, f"{p}.pt"))
            for p in ("vision_backbone", "vision_neck", "text_encoder", "head_text", "head_text_boxes", "pixel_decoder", "pixel_skip", "pixel_split")
        }

        gen = torch.Generator().manual_seed(3)
        pixel_values = torch.rand(3, 3, 112, 112, generator=gen) * 2 - 1
        prompts = ["a cat", "visual", "the red car parked on the left side of the street"]
        enc = tokenizer(prompts, padding="max_length", max_length=32, truncation=True, return_tensors="pt")
        # Two boxes per row (cxcywh), one negative; row 1 has a single box and padding (-10).
        boxes = torch.tensor(
            [
                [[0.5, 0.5, 0.4, 0.3], [0.2, 0.7, 0.2, 0.2]],
                [[0.3, 0.3, 0.5, 0.5], [-10.0, -10.0, 0.0, 0.0]],
                [[0.8, 0.1, 0.3, 0.6], [0.45, 0.55, 1.2, 0.9]],
            ]
        )
        labels = torch.tensor([[1, 0], [1, -10], [0, 1]])

        with torch.no_grad():
            feats = pieces["vision_neck"](*pieces["vision_backbone"](pixel_values))
            (text,) = pieces["text_encoder"](enc["input_ids"], enc["attention_mask"])
            mask = enc["attention_mask"].bool()
            got_text = pieces["head_text"](*feats[2:], text, mask)
            got_boxes = pieces["head_text_boxes"](*feats[2:], text, mask, boxes, labels)
            # As the addon calls it: one image's skip features (batch 1) under one prompt's visual.
            one = pieces["pixel_decoder"](feats[0][1:2], feats[1][1:2], got_boxes[5][1:2])
            # The split form, as the addon runs it once an image has had a few prompts: pixel_skip
            # once on the image, pixel_split on all three prompts' visual features.
            s0, s1 = pieces["pixel_skip"](feats[0][1:2], feats[1][1:2])
            split = pieces["pixel_split"](s0, s1, got_boxes[5])
            whole = pieces["pixel_decoder"](feats[0][1:2], feats[1][1:2], got_boxes[5])
            want_text = model(pixel_values=pixel_values, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            want_boxes = model(
                pixel_values=pixel_values,
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                input_boxes=boxes,
                input_boxes_labels=labels,
            )

        from sam3tools.pieces_head import with_masks

        self.assertEqual(len(got_text), 6)
        width = model.config.mask_decoder_config.hidden_size
        self.assertEqual(tuple(got_boxes[3].shape), (3, 20, width))  # mask embeddings [B,Q,C]
        self.assertEqual(tuple(got_boxes[4].shape), (3, 20))  # mask bias [B,Q]
        self.assertEqual(tuple(got_boxes[5].shape), (3, width, 8, 8))  # visual [B,C,h,w]
        got_text = with_masks(got_text, pieces["pixel_decoder"], *feats[:2])
        got_boxes_raw = got_boxes
        got_boxes = with_masks(got_boxes, pieces["pixel_decoder"], *feats[:2])
        self.assertEqual(tuple(one.shape), (1, width, 32, 32))  # pixel embeddings [B,C,M,M]
        self.assertEqual(split.shape, whole.shape)
        self.assertLessEqual(((split - whole).abs().max() / whole.abs().max()).item(), 1e-5)
        self.assertLessEqual((whole[1:2] - one).abs().max().item(), 1e-5)
        for what, got, want in (("text", got_text, want_text), ("text+boxes", got_boxes, want_boxes)):
            expected = (want.pred_logits, want.pred_boxes, want.presence_logits, want.pred_masks)
            for name, g, w in zip(("pred_logits", "pred_boxes", "presence_logits", "pred_masks"), got, expected):
                self.assertEqual(g.shape, w.shape, f"{what} {name}")
                diff = (g - w).abs().max().item()
                self.assertLessEqual(diff, 1e-5, f"{what} {name}: max |diff| {diff}")
        self.assertEqual(tuple(got_boxes[3].shape), (3, 20, 32, 32))
        want_one = torch.einsum("qc,chw->qhw", got_boxes_raw[3][1], one[0]) + got_boxes_raw[4][1][:, None, None]
        self.assertLessEqual((want_one - want_boxes.pred_masks[1]).abs().max().item(), 1e-5)
        # The boxes must matter (else the box path was not exercised).
        self.assertGreater((got_boxes[0] - got_text[0]).abs().max().item(), 0.0)

    def test_bundle_tokenizer_matches_transformers(self):
        from tokenizers import Tokenizer
        from transformers import AutoTokenizer

        standalone = Tokenizer.from_file(os.path.join(self.bundle, "tokenizer.json"))
        reference = AutoTokenizer.from_pretrained(self.checkpoint)
        self.assertGreaterEqual(len(TOKEN_PROMPTS), 20)
        for prompt in TOKEN_PROMPTS:
            enc = standalone.encode(prompt)
            want = reference(prompt, padding="max_length", max_length=32, truncation=True)
            self.assertEqual(enc.ids, list(want["input_ids"]), prompt)
            self.assertEqual(enc.attention_mask, list(want["attention_mask"]), prompt)
            self.assertEqual(len(enc.ids), 32)
            self.assertEqual(enc.ids[0], 49406)
        # The real CLIP vocabulary, not a stand-in.
        self.assertEqual(standalone.encode("a photo of a cat").ids[:7], [49406, 320, 1125, 539, 320, 2368, 49407])

    def test_reference_tool(self):
        from PIL import Image

        import make_reference

        img = Image.new("RGB", (40, 30))
        for x in range(40):
            for y in range(30):
                img.putpixel((x, y), (x * 6, y * 8, 128))
        image_path = os.path.join(self.tmp, "img.png")
        img.save(image_path)
        cases = {
            "images": {"img": image_path},
            "cases": [
                {"name": "all", "image": "img", "threshold": 0.0, "queries": [
                    {"text": "a cat", "boxes": None, "labels": None},
                    {"text": None, "boxes": [[0.1, 0.2, 0.3, 0.4]], "labels": None},
                    {"text": " ".join(["long"] * 60), "boxes": [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.2, 0.2]], "labels": [True, False]},
                ]},
                {"name": "nothing", "image": "img", "threshold": 1.0, "queries": [{"text": "dog", "boxes": None, "labels": None}]},
            ],
            "tokens": ["a cat", " ".join(["long"] * 60)],
        }
        cases_path = os.path.join(self.tmp, "cases.json")
        out_path = os.path.join(self.tmp, "ref.json")
        with open(cases_path, "w") as fh:
            json.dump(cases, fh)
        code, err = run_main(make_reference, ["--checkpoint", self.checkpoint, "--cases", cases_path, "--out", out_path])
        self.assertEqual(code, 0, err)
        with open(out_path) as fh:
            ref = json.load(fh)
        q = ref["cases"]["all"]["queries"]
        self.assertEqual([x["text_used"] for x in q], ["a cat", "visual", " ".join(["long"] * 60)])
        self.assertEqual(ref["cases"]["all"]["image_size"], {"width": 40, "height": 30})
        for x in q:
            self.assertEqual(len(x["all_scores"]), 20)
            self.assertEqual(len(x["scores"]), 20)  # threshold 0 keeps every query
            self.assertEqual(x["scores"], sorted(x["scores"], reverse=True))
            self.assertEqual(x["masks"][0]["size"], [30, 40])
            self.assertEqual(len(x["input_ids"]), 32)
        nothing = ref["cases"]["nothing"]["queries"][0]
        self.assertEqual((nothing["scores"], nothing["boxes"], nothing["masks"]), ([], [], []))
        self.assertEqual(len(nothing["all_scores"]), 20)
        long_tokens = ref["tokens"][" ".join(["long"] * 60)]
        self.assertEqual(len(long_tokens["input_ids"]), 32)
        self.assertEqual(long_tokens["input_ids"][-1], 49407)
        self.assertEqual(sum(long_tokens["attention_mask"]), 32)
        stats = ref["images"]["img"]["pixel_values"]
        self.assertEqual(stats["shape"], [3, 112, 112])
        self.assertTrue(all(-1.0 <= v <= 1.0 for v in stats["min"] + stats["max"]))


if __name__ == "__main__":
    unittest.main()
