"""Tests of the concept-tracking op sequences' plumbing without a model: validation, the server's
frame order against transformers' own processing order, the demo's op cases, and the stability
check's comparisons. (The ops run end to end in test_concept.ConceptFixtureTest.) A second or two.

Run from the repository root: ``.venv/bin/python -m unittest discover -s tests/python -t .``
"""
from __future__ import annotations

import sys
import unittest
import warnings
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))


class ConceptOpsTest(unittest.TestCase):
    def test_check_ops(self):
        from sam3tools.concept_ops import check_frames, check_ops

        got = check_ops("c", [{"op": "prompt", "text": "a", "frame": 2}, {"op": "propagate", "start": 1}, {"op": "remove", "obj_id": 3}])
        self.assertEqual(got, [{"op": "prompt", "text": "a", "frame": 2},
                               {"op": "propagate", "start": 1, "direction": "forward", "max_frames": None},
                               {"op": "remove", "obj_id": 3}])
        for bad, pattern in (([], "non-empty"), ([{"op": "jump"}], "op 0: expected"), ([{"op": "prompt", "text": "", "frame": 0}], "non-empty text"),
                             ([{"op": "prompt", "text": "a", "frame": -1}], "frame must be"), ([{"op": "prompt", "text": "a", "frame": True}], "frame must be"),
                             ([{"op": "propagate", "start": 0, "direction": "sideways"}], "direction"),
                             ([{"op": "propagate", "start": 0, "max_frames": 1.5}], "max_frames must be an integer >= 0 or null"),
                             ([{"op": "remove", "obj_id": 1, "frame": 0}], "unknown keys for remove: frame")):
            with self.assertRaisesRegex(ValueError, pattern, msg=bad):
                check_ops("c", bad)
        check_frames("c", got, 3)
        with self.assertRaisesRegex(ValueError, "op 0: frame 2 is outside the 2 frames"):
            check_frames("c", got, 2)

    def test_check_case(self):
        from sam3tools.concept_reference import check_case

        case = check_case({"name": "c", "frames_dir": "f", "ops": [{"op": "propagate", "start": 0}], "config": {"hotstart_delay": 0}})
        self.assertEqual(case["prompts"], [])
        self.assertEqual(case["config"], {"hotstart_delay": 0})
        with self.assertRaisesRegex(ValueError, "direction, start_frame_index belong to a case without ops"):
            check_case({"name": "c", "frames_dir": "f", "ops": [{"op": "propagate", "start": 0}], "direction": "forward", "start_frame_index": 0})
        with self.assertRaisesRegex(ValueError, "needs 'prompts' or 'ops'"):
            check_case({"name": "c", "frames_dir": "f"})
        self.assertEqual(check_case({"name": "c", "frames_dir": "f", "prompts": ["a"]})["direction"], "forward")  # unchanged

    def test_frame_order_matches_transformers(self):
        """server_frames (the server's definition) == the frames transformers processes for the
        calls iterator_calls makes, per Sam3VideoModel._get_processing_order itself."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script in transformers' module
            from transformers import Sam3VideoModel

        from sam3tools.concept_ops import iterator_calls, server_frames, transformers_order

        self.assertEqual(server_frames(3, "both", 4, 10), [3, 4, 5, 6, 7, 2, 1, 0])
        self.assertEqual(server_frames(9, "backward", None, 10), list(range(9, -1, -1)))
        self.assertEqual(server_frames(2, "backward", 0, 10), [2])
        self.assertEqual(server_frames(0, "both", 2, 10), [0, 1, 2])
        self.assertEqual(iterator_calls(0, "both", 2, 10), [{"start_frame_idx": 0, "max_frame_num_to_track": 2, "reverse": False, "frames": [0, 1, 2]}])
        self.assertEqual(iterator_calls(9, "backward", None, 10)[0]["start_frame_idx"], 10)
        for n in (1, 2, 5):
            session = SimpleNamespace(num_frames=n)
            for start in range(n):
                for m in (None, 0, 1, 2, n + 3):
                    for direction in ("forward", "backward", "both"):
                        calls = iterator_calls(start, direction, m, n)  # asserts its own frames == server_frames
                        for c in calls:
                            order, _ = Sam3VideoModel._get_processing_order(None, session, c["start_frame_idx"], c["max_frame_num_to_track"], c["reverse"])
                            self.assertEqual(list(order), c["frames"])
                            self.assertEqual(transformers_order(c["start_frame_idx"], c["max_frame_num_to_track"], c["reverse"], n), c["frames"])
                        frames = server_frames(start, direction, m, n)
                        self.assertEqual(frames[0], start)
                        self.assertEqual(len(set(frames)), len(frames))

    def test_demo_op_cases(self):
        from sam3tools.concept_demo import NUM_FRAMES, OP_CASES, op_case_frames
        from sam3tools.concept_reference import check_case

        self.assertEqual([c["name"] for c in OP_CASES],
                         ["ops_forward", "ops_forward_no_hotstart", "ops_backward", "ops_both_window", "ops_repeat_prompt"])
        for case in OP_CASES:
            checked = check_case(dict(case, frames_dir="frames"))
            self.assertLessEqual(op_case_frames(checked), NUM_FRAMES)
        self.assertEqual(op_case_frames(OP_CASES[2]), 10)

    def test_demo_bf16_cases(self):
        from sam3tools.concept_demo import BF16_CASES, NUM_FRAMES, op_case_frames
        from sam3tools.concept_reference import check_case

        self.assertEqual([c["name"] for c in BF16_CASES],
                         ["bf16_forward", "bf16_backward", "bf16_unmatched_capped", "bf16_keep_alive", "bf16_ops_both_window"])
        for case in BF16_CASES:
            checked = check_case(dict(case, frames_dir="frames"))
            self.assertEqual(checked["config"]["new_det_thresh"], 0.2568)
            self.assertLessEqual(op_case_frames(checked) if "ops" in checked else checked["start_frame_index"], NUM_FRAMES)

    def test_margins_compare_in_the_values_dtype(self):
        import torch

        from sam3tools.concept_probe import Margins

        m = Margins()
        # 0.2535 rounds to bfloat16 0.25390625: a bfloat16 score there sits on the threshold.
        m.add("bf16", torch.tensor([0.25390625, 0.2578125], dtype=torch.bfloat16), 0.2535)
        m.add("f32", torch.tensor([0.25390625, 0.2578125]), 0.2535)
        got = m.report()["closest"]
        self.assertEqual(got["bf16"], {"distance": 0.0, "value": 0.25390625, "threshold": 0.2535, "threshold_as_compared": 0.25390625})
        self.assertAlmostEqual(got["f32"]["distance"], 0.00040625, places=7)
        self.assertNotIn("threshold_as_compared", got["f32"])

    def test_stability_comparisons(self):
        from sam3tools.concept_stability import decisions, first_difference

        frame = {"frame_index": 0, "object_ids": [1], "removed_obj_ids": [], "suppressed_obj_ids": [], "prompt_to_obj_ids": {"a": [1]}}
        processed = {"frame_index": 0, "detections_per_prompt": {"0": 2}, "nms_suppressed": 1, "occlusion_suppressed_obj_ids": [], "new_obj_ids": [1]}
        a = {"ops": [{"outputs": [frame]}, {"outputs": []}], "processed": [processed]}
        b = {"frames": [frame], "processed": [dict(processed, new_obj_ids=[2])]}
        self.assertEqual(len(decisions(a)), 2)
        self.assertIsNone(first_difference(decisions(a), decisions(a)))
        self.assertIn("(1,)", first_difference(decisions(a), decisions(b)))
        self.assertEqual(first_difference(decisions(a), decisions(a)[:1]), "2 != 1 entries")


if __name__ == "__main__":
    unittest.main()
