#!/usr/bin/env python3
"""Checks that concept-tracking reference cases are stable enough for exact parity tests (build-time
tool): each case runs in float32, in float64 and with EPS * N(0, 1) noise on the preprocessed frames
(one run per seed), and must take the same decisions in every run (sam3tools/concept_stability.py).
With --dtype bfloat16 the case runs in bfloat16, against itself with the noise (no float64 run).

    check_concept_stability.py --checkpoint DIR --cases CASES.json [--eps 1e-3] [--seeds 5,6,7]
                               [--dtype float32|bfloat16] [--out REPORT.json]

One line per case on stderr; exit status 3 when a case is not stable (2: bad input).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sam3tools.cli import Tool, quiet_transformers, write_json  # noqa: E402

tool = Tool("check_concept_stability", "Check that concept-tracking reference cases are stable in float64 and under input noise.")
tool.checkpoint("Hugging Face sam3_video folder")
tool.add("--cases", required=True, help="cases JSON file (as make_concept_reference.py takes)")
tool.add("--eps", type=float, default=1e-3, help="noise scale on the preprocessed pixels (default 1e-3)")
tool.add("--seeds", default="5", help="comma-separated noise seeds, one run each (default 5)")
tool.add("--out", default=None, help="also write the per-case report as JSON")
tool.dtype(["float32", "bfloat16"], "the model's dtype (bfloat16: noise runs only)")


def main(argv: list[str] | None = None) -> int:
    args = tool.parse(argv)
    try:
        seeds = tuple(int(s) for s in args.seeds.split(","))
    except ValueError:
        return tool.refuse(f"--seeds expects integers separated by commas, got {args.seeds!r}")

    import torch

    from sam3tools.checkpoint_io import CheckpointError
    from sam3tools.concept_reference import load_concept_cases
    from sam3tools.concept_stability import check_stability

    quiet_transformers(progress_bar=False)
    try:
        cases = load_concept_cases(args.cases)
        base = os.path.dirname(os.path.abspath(args.cases))
        report = check_stability(args.checkpoint, cases, base, args.eps, seeds, log=tool.log, dtype=getattr(torch, args.dtype))
    except (CheckpointError, ValueError, KeyError, OSError) as err:
        return tool.refuse(err)
    if args.out:
        write_json(args.out, report)
    unstable = [name for name, entry in report.items() if not entry["stable"]]
    if unstable:
        return tool.refuse(f"not stable: {', '.join(unstable)}", code=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
