#!/usr/bin/env python3
"""Reference concept tracking (text prompts through a video) of transformers' eager Sam3VideoModel,
with mask NMS and hole filling run by pure-torch kernels, for the parity tests (build-time tool).

    make_concept_reference.py --checkpoint DIR --cases CASES.json --out OUT.json
                              [--dtype float32|bfloat16] [--debug OUT.pt]

A case is either one propagation of registered prompts or, with "ops", a sequence of the server
API's calls on one session (prompt on a frame, propagate forward/backward/both, remove an object;
sam3tools/concept_ops.py gives their transformers equivalents). See sam3tools/concept_reference.py for
the cases and output formats. --debug writes, per case and
processed frame, the intermediate tensors (detections after NMS, tracker masks after hole filling,
the update plan, the raw obj_id_to_mask low-resolution logits and scores) with torch.save.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sam3tools.cli import Tool, quiet_transformers, write_json  # noqa: E402

tool = Tool("make_concept_reference", "Reference concept tracking of transformers' eager Sam3VideoModel.")
tool.checkpoint("Hugging Face sam3_video folder").cases_and_out()
tool.dtype(["float32", "bfloat16"], "the model's dtype (a bundle exported in it)")
tool.add("--debug", default=None, metavar="OUT.pt", help="also write the intermediate tensors of every processed frame (torch.save)")


def main(argv: list[str] | None = None) -> int:
    args = tool.parse(argv)

    import torch

    from sam3tools.checkpoint_io import CheckpointError
    from sam3tools.concept_reference import load_concept_cases, make_concept_reference

    quiet_transformers(progress_bar=False)
    debug = [] if args.debug else None
    try:
        cases = load_concept_cases(args.cases)
        base = os.path.dirname(os.path.abspath(args.cases))
        result = make_concept_reference(args.checkpoint, cases, base, log=tool.log, dtype=getattr(torch, args.dtype), debug=debug)
    except (CheckpointError, ValueError, KeyError, OSError) as err:
        return tool.refuse(err)
    write_json(args.out, result)
    if debug is not None:
        tmp = args.debug + ".tmp"
        torch.save({"dtype": args.dtype, "cases": debug}, tmp)
        os.replace(tmp, args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
