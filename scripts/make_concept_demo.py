#!/usr/bin/env python3
"""Write the concept-tracking parity fixture's frames and cases (build-time tool).

    make_concept_demo.py --out DIR [--frames N]

Writes DIR/frames/frame_000.png .. (96x72 lossless PNGs, sam3tools/concept_demo.FRAME_FORMULA) and
DIR/cases.json (concept_demo.CASES, for make_concept_reference.py), DIR/op_cases.json
(concept_demo.OP_CASES: the same video as the server's API calls it), DIR/cases_bfloat16.json
(concept_demo.BF16_CASES: settings whose decisions bfloat16 can resolve), and prints on stdout the
make_tiny_checkpoint.py arguments of the checkpoint they were designed for (seed 1, 112 px, the
--video-config values of concept_demo.CHECKPOINT_CONFIG), with CHECKPOINT where its folder goes:

    python scripts/make_tiny_checkpoint.py $(python scripts/make_concept_demo.py --out DIR)
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sam3tools.cli import Tool  # noqa: E402

tool = Tool("make_concept_demo", "Write the concept-tracking parity fixture's frames and cases.")
tool.add("--out", required=True, help="output folder (frames/, cases.json, op_cases.json and cases_bfloat16.json; existing files are overwritten)")
tool.add("--frames", type=int, default=None, help="number of frames (default 10; cases that need more are left out)")
tool.add("--checkpoint-folder", default="CHECKPOINT", help="the --out printed in the make_tiny_checkpoint.py arguments")


def main(argv: list[str] | None = None) -> int:
    args = tool.parse(argv)
    from sam3tools.concept_demo import NUM_FRAMES, checkpoint_command, write_demo

    frames = NUM_FRAMES if args.frames is None else args.frames
    if frames < 1:
        return tool.refuse("--frames must be at least 1")
    path = write_demo(args.out, frames)
    tool.log(f"wrote {frames} frames and {path}")
    print(" ".join(checkpoint_command(args.checkpoint_folder)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
