"""Tests of the concept-tracking tools: make_tiny_checkpoint --video-config, the manifest's
video.concept (bundle format 7), the tracker pieces as the concept loop calls them, and
make_concept_reference.py on the demo fixture (sam3tools/concept_demo.py), with a single propagation
and with an op sequence (the server API's calls), and check_concept_stability.py. One tiny checkpoint
(the demo's: seed 1, 112 px) and its bundle are shared; ~25 s on the 2-core build machine.

Run from the repository root: ``.venv/bin/python -m unittest discover -s tests/python -t .``
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
import unittest
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import torch  # noqa: E402

torch.set_num_threads(1)


def run_main(module, argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = module.main(argv)
    return code, err.getvalue(), out.getvalue()


class ConceptConfigTest(unittest.TestCase):
    def test_parse_overrides(self):
        from sam3tools.concept_config import CONCEPT_FIELDS, check_hotstart, field_defaults, parse_overrides

        got = parse_overrides(["hotstart_delay=2", "det_nms_thresh=0.3", "recondition_on_trk_masks=false", "fill_hole_area=0", "det_nms_thresh=0.25"])
        self.assertEqual(got, {"hotstart_delay": 2, "det_nms_thresh": 0.25, "recondition_on_trk_masks": False, "fill_hole_area": 0})
        self.assertIs(type(got["hotstart_delay"]), int)
        self.assertIs(type(got["det_nms_thresh"]), float)
        self.assertEqual(parse_overrides(["score_threshold_detection=1"]), {"score_threshold_detection": 1.0})
        for bad in (["nope=1"], ["hotstart_delay=1.5"], ["hotstart_delay"], ["recondition_on_trk_masks=maybe"], ["det_nms_thresh=x"], ["=3"]):
            with self.assertRaises(ValueError, msg=bad):
                parse_overrides(bad)
        defaults = field_defaults()
        self.assertEqual(tuple(defaults), CONCEPT_FIELDS)
        self.assertEqual(len(CONCEPT_FIELDS), 21)
        check_hotstart(defaults)
        with self.assertRaisesRegex(ValueError, "hotstart_unmatch_thresh"):
            check_hotstart({**defaults, "hotstart_delay": 2})
        check_hotstart({**defaults, "hotstart_delay": 0})

    def test_refusals_of_make_tiny_checkpoint(self):
        import make_tiny_checkpoint

        for flags, pattern in ((["--video-config", "bogus=1"], "unknown concept-tracking setting 'bogus'"),
                               (["--video-config", "hotstart_delay=2"], r"hotstart_unmatch_thresh \(8\) must be <= hotstart_delay \(2\)")):
            code, err, _ = run_main(make_tiny_checkpoint, ["--out", os.path.join(tempfile.gettempdir(), "never-written"), *flags])
            self.assertEqual(code, 2, err)
            self.assertRegex(err.strip().splitlines()[-1], "^make_tiny_checkpoint: " + pattern)

    def test_video_config_changes_config_only(self):
        from sam3tools.checkpoint import build_model
        from sam3tools.concept_demo import CHECKPOINT_CONFIG

        plain = build_model("tiny", 112, 3)
        tuned = build_model("tiny", 112, 3, dict(CHECKPOINT_CONFIG))
        for key, value in CHECKPOINT_CONFIG.items():
            self.assertEqual(getattr(tuned.config, key), value)
            self.assertEqual(getattr(tuned, key), value)  # Sam3VideoModel copies them in __init__
        want = plain.state_dict()
        got = tuned.state_dict()
        self.assertEqual(set(got), set(want))
        self.assertTrue(all(torch.equal(got[k], want[k]) for k in want))


class ConceptFixtureTest(unittest.TestCase):
    """The demo checkpoint, made with the CLI and its printed --video-config flags, and its bundle."""

    @classmethod
    def setUpClass(cls):
        from transformers.utils import logging as hf_logging

        import make_concept_demo
        import make_tiny_checkpoint
        from sam3tools.export import export_bundle

        hf_logging.set_verbosity_error()
        cls.tmp = tempfile.mkdtemp(prefix="sam3-concept-test-")
        cls.demo = os.path.join(cls.tmp, "demo")
        cls.checkpoint = os.path.join(cls.tmp, "checkpoint")
        code, err, printed = run_main(make_concept_demo, ["--out", cls.demo, "--checkpoint-folder", cls.checkpoint])
        assert code == 0, err
        cls.checkpoint_args = printed.split()
        code, err, _ = run_main(make_tiny_checkpoint, [*cls.checkpoint_args, "--no-check"])
        assert code == 0, err
        cls.bundle = os.path.join(cls.tmp, "bundle")
        cls.manifest = export_bundle(cls.checkpoint, cls.bundle)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_manifest_concept_section(self):
        from transformers import Sam3VideoConfig

        from sam3tools.concept_config import CONCEPT_FIELDS
        from sam3tools.concept_demo import CHECKPOINT_CONFIG

        self.assertIn("--video-config", self.checkpoint_args)
        m = self.manifest
        self.assertEqual(m["format_version"], 8)
        concept = m["video"]["concept"]
        self.assertEqual(list(concept), list(CONCEPT_FIELDS))
        for key in CONCEPT_FIELDS:
            want = CHECKPOINT_CONFIG.get(key, getattr(Sam3VideoConfig, key))
            self.assertEqual(concept[key], want, key)
            self.assertIs(type(concept[key]), type(getattr(Sam3VideoConfig, key)), key)
        # The changed values differ from Sam3VideoConfig's defaults (which the default fixture records).
        self.assertNotEqual(concept["hotstart_delay"], Sam3VideoConfig.hotstart_delay)
        self.assertNotEqual(concept["det_nms_thresh"], Sam3VideoConfig.det_nms_thresh)
        with open(os.path.join(self.bundle, "manifest.json")) as fh:
            self.assertEqual(json.load(fh)["video"]["concept"], concept)

    def _jit(self, name):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(os.path.join(self.bundle, f"{name}.pt"))

    def test_tracker_pieces_as_the_concept_loop_calls_them(self):
        """What the native concept loop needs from the bundle, against Sam3VideoModel's eager calls:
        tracker_neck gives Sam3VideoModel's tracker features; memory_encoder takes the planning
        phase's low-resolution (4g) mask logits with +-10 object scores as they are (its traced
        resize goes to the fixed 16g memory size from any input size); tracker_mask_prompt takes a
        new object's mask only once the caller has resized it to R x R (bilinear, antialias), as
        _use_mask_as_output does inside from the detector's 4g mask >= 0.5."""
        import torch.nn.functional as F

        from sam3tools.concept_reference import load_concept_model

        model = load_concept_model(self.checkpoint)
        tracker = model.tracker_model
        gen = torch.Generator().manual_seed(0)
        r, g = 112, 8
        with torch.inference_mode():
            pixels = torch.rand(1, 3, r, r, generator=gen) * 2 - 1
            vision = model.detector_model.get_vision_features(pixel_values=pixels)
            feats, _ = model.get_vision_features_for_tracker(vision)
            (hidden,) = self._jit("vision_backbone")(pixels)
            s0, s1, top, _ = self._jit("tracker_neck")(hidden)
            nchw = lambda x, side: x.permute(1, 2, 0).reshape(1, -1, side, side)  # noqa: E731
            for got, want in ((s0, nchw(feats[0], 4 * g)), (s1, nchw(feats[1], 2 * g)), (top, nchw(feats[2], g))):
                self.assertLessEqual((got - want).abs().max().item(), 1e-5)

            low = torch.randn(3, 1, 4 * g, 4 * g, generator=gen) * 3
            logits = torch.tensor([10.0, -10.0, 10.0]).view(3, 1, 1)
            want_mem, want_pos = tracker._encode_new_memory(
                current_vision_feats=feats[2].expand(-1, 3, -1), pred_masks_high_res=low, object_score_logits=logits, is_mask_from_pts=False
            )
            got_mem, got_pos = self._jit("memory_encoder")(top.expand(3, -1, -1, -1), low, logits)
            self.assertLessEqual((got_mem.float().flatten(2).permute(2, 0, 1) - want_mem.float()).abs().max().item(), 1e-5)
            self.assertLessEqual((got_pos.flatten(2).permute(2, 0, 1) - want_pos).abs().max().item(), 1e-5)

            mask = (torch.randn(1, 1, 4 * g, 4 * g, generator=gen) >= 0.5).float()
            want = tracker._use_mask_as_output(nchw(feats[2], g), [nchw(feats[0], 4 * g), nchw(feats[1], 2 * g)], mask)
            resized = F.interpolate(mask, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
            got = self._jit("tracker_mask_prompt")(s0, s1, top, resized)
            for name, a, b in zip(("pred_masks", "high_res_masks", "object_pointer", "object_score_logits"), got,
                                  (want.pred_masks, want.high_res_masks, want.object_pointer, want.object_score_logits)):
                self.assertEqual(a.shape, b.shape, name)
                self.assertLessEqual((a - b).abs().max().item(), 1e-5, name)

    def test_concept_reference_on_the_demo(self):
        import make_concept_reference

        with open(os.path.join(self.demo, "cases.json")) as fh:
            cases = {c["name"]: c for c in json.load(fh)["cases"]}
        self.assertEqual(len(os.listdir(os.path.join(self.demo, "frames"))), 10)
        subset = os.path.join(self.demo, "subset.json")
        with open(subset, "w") as fh:
            json.dump([cases["forward"], cases["forward_unmatched"], cases["backward_keep_alive"]], fh)
        out, debug = os.path.join(self.tmp, "ref.json"), os.path.join(self.tmp, "debug.pt")
        code, err, _ = run_main(make_concept_reference, ["--checkpoint", self.checkpoint, "--cases", subset, "--out", out, "--debug", debug])
        self.assertEqual(code, 0, err)
        with open(out) as fh:
            ref = json.load(fh)
        fwd = ref["cases"]["forward"]
        self.assertEqual((fwd["width"], fwd["height"], fwd["resolution"]), (96, 72, 112))
        self.assertEqual([f["frame_index"] for f in fwd["frames"]], list(range(10)))
        self.assertEqual(fwd["settings"]["hotstart_delay"], 3)
        st = fwd["stats"]
        self.assertGreaterEqual(st["objects_first_frame"], 3)  # several objects on the first frame
        self.assertGreater(st["nms_suppressed"], 0)  # NMS ran (transformers alone would skip it)
        self.assertGreater(st["objects_created_after_first_frame"], 0)
        self.assertGreater(st["hotstart_removed"], 0)
        self.assertGreater(st["reconditioning_events"], 0)
        self.assertGreater(st["occlusion_suppressions"], 0)
        self.assertGreater(st["hole_fill_pixels_filled"], 0)  # hole filling ran
        self.assertGreater(st["sprinkle_pixels_removed"], 0)
        removed = set()
        for frame in fwd["frames"]:
            ids = frame["object_ids"]
            self.assertEqual(len(frame["masks"]), len(ids))
            self.assertEqual(len(frame["boxes"]), len(ids))
            self.assertEqual(len(frame["scores"]), len(ids))
            self.assertEqual(sorted(sum(frame["prompt_to_obj_ids"].values(), [])), ids)
            self.assertTrue(all(m["size"] == [72, 96] for m in frame["masks"]))
            removed |= set(frame["removed_obj_ids"])
        self.assertFalse(removed & {i for f in fwd["frames"] for i in f["object_ids"]}, "hotstart-removed objects are hidden")
        self.assertTrue(any(f["object_ids"] for f in fwd["frames"]))
        reasons = {r for f in ref["cases"]["forward_unmatched"]["processed"] for r in f["hotstart_removal_reasons"].values()}
        self.assertIn("unmatched", reasons)
        self.assertIn("duplicate", {r for f in fwd["processed"] for r in f["hotstart_removal_reasons"].values()})
        keep = ref["cases"]["backward_keep_alive"]
        self.assertEqual([f["frame_index"] for f in keep["frames"]], [7, 6, 5, 4, 3])
        self.assertTrue(any(f["suppressed_obj_ids"] for f in keep["frames"]))
        self.assertFalse(keep["settings"]["recondition_on_trk_masks"])
        self.assertGreater(keep["stats"]["reconditioning_events"], 0)
        dump = torch.load(debug, weights_only=True)
        self.assertEqual([c["name"] for c in dump["cases"]], ["forward", "forward_unmatched", "backward_keep_alive"])
        first = dump["cases"][0]["frames"][1]
        self.assertEqual(first["frame_index"], 1)
        self.assertTrue(all(tuple(m.shape) == (1, 32, 32) for m in first["obj_id_to_mask"].values()))
        # obj_id_to_score keeps removed objects (score -1e4); obj_id_to_mask only the live ones.
        self.assertLessEqual(set(first["obj_id_to_mask"]), set(first["obj_id_to_score"]))
        self.assertTrue(all(first["obj_id_to_score"][i] == -1e4 for i in set(first["obj_id_to_score"]) - set(first["obj_id_to_mask"])))

    def test_concept_ops_on_the_demo(self):
        """A short op sequence as the server's API calls it: prompts running their frame at once (the
        same text twice keeps its prompt id), backward including the start frame, a removal, both
        ways; then check_concept_stability.py on a two-frame case."""
        import check_concept_stability
        import make_concept_reference

        with open(os.path.join(self.demo, "op_cases.json")) as fh:
            self.assertIn("ops_forward", [c["name"] for c in json.load(fh)["cases"]])
        ops = [{"op": "prompt", "text": "red disc", "frame": 2}, {"op": "prompt", "text": "blue square", "frame": 2},
               {"op": "prompt", "text": "red disc", "frame": 2}, {"op": "propagate", "start": 2, "direction": "backward", "max_frames": 1},
               {"op": "remove", "obj_id": 0}, {"op": "propagate", "start": 4, "direction": "both", "max_frames": 1}]
        cases = os.path.join(self.demo, "ops_short.json")
        with open(cases, "w") as fh:
            json.dump([{"name": "short", "frames_dir": "frames", "ops": ops}], fh)
        out = os.path.join(self.tmp, "ops_ref.json")
        code, err, _ = run_main(make_concept_reference, ["--checkpoint", self.checkpoint, "--cases", cases, "--out", out])
        self.assertEqual(code, 0, err)
        with open(out) as fh:
            case = json.load(fh)["cases"]["short"]
        self.assertEqual(case["prompts"], ["red disc", "blue square"])
        self.assertEqual(case["settings"]["hotstart_delay"], 3)
        got = case["ops"]
        self.assertEqual([r["op"] for r in got], [o["op"] for o in ops])
        self.assertEqual([r.get("prompt_id") for r in got[:3]], [0, 1, 0])
        want_frames = [[2], [2], [2], [2, 1], [], [4, 5, 3]]
        self.assertEqual([r["frames_processed"] for r in got], want_frames)
        self.assertEqual([[f["frame_index"] for f in r["outputs"]] for r in got], want_frames)
        self.assertEqual(got[3]["calls"], [{"start_frame_idx": 3, "max_frame_num_to_track": 2, "reverse": True}])
        self.assertEqual([c["reverse"] for c in got[5]["calls"]], [False, True])
        self.assertEqual(case["stats"]["frames_processed"], sum(want_frames, []))
        self.assertEqual(got[3]["stats"]["frames_processed"], [2, 1])
        keys = {"frame_index", "object_ids", "scores", "tracker_scores", "masks", "boxes", "prompt_to_obj_ids", "removed_obj_ids", "suppressed_obj_ids"}
        for record in got:
            for frame in record["outputs"]:
                self.assertEqual(set(frame), keys)
                self.assertEqual(len(frame["masks"]), len(frame["object_ids"]))
        self.assertIn(0, got[0]["outputs"][0]["object_ids"])
        self.assertTrue(got[4]["existed"])
        self.assertFalse(any(0 in f["object_ids"] for r in got[5:] for f in r["outputs"]))
        # The prompt's frame comes out at once (no hotstart delay), and the session's later prompts
        # join the earlier ones on their frame.
        self.assertEqual(list(got[1]["outputs"][0]["prompt_to_obj_ids"]), ["red disc", "blue square"])

        two = os.path.join(self.demo, "ops_two.json")
        with open(two, "w") as fh:
            json.dump([{"name": "two", "frames_dir": "frames", "ops": [ops[0], {"op": "propagate", "start": 2, "max_frames": 1}]}], fh)
        report = os.path.join(self.tmp, "stability.json")
        code, err, _ = run_main(check_concept_stability, ["--checkpoint", self.checkpoint, "--cases", two, "--out", report])
        self.assertEqual(code, 0, err)
        with open(report) as fh:
            entry = json.load(fh)["two"]
        self.assertTrue(entry["stable"])
        self.assertEqual(set(entry), {"stable", "float64", "noise0.001_seed5"})
        # In bfloat16: the case in bfloat16 against itself with the noise (no float64 run).
        code, err, _ = run_main(check_concept_stability, ["--checkpoint", self.checkpoint, "--cases", two, "--out", report, "--dtype", "bfloat16"])
        self.assertIn(code, (0, 3), err)
        with open(report) as fh:
            entry = json.load(fh)["two"]
        self.assertEqual(set(entry), {"stable", "noise0.001_seed5"})
        self.assertEqual(entry["stable"], code == 0)

        with open(two, "w") as fh:
            json.dump([{"name": "late", "frames_dir": "frames", "ops": [{"op": "prompt", "text": "red disc", "frame": 10}]}], fh)
        code, err, _ = run_main(make_concept_reference, ["--checkpoint", self.checkpoint, "--cases", two, "--out", out])
        self.assertEqual(code, 2)
        self.assertIn("case late, op 0: frame 10 is outside the 10 frames", err)


if __name__ == "__main__":
    unittest.main()
