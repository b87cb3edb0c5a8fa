#!/usr/bin/env python3
"""Reference interactive segmentation of transformers' eager Sam3TrackerModel for the parity tests
(build-time tool).

    make_interactive_reference.py --checkpoint DIR --cases CASES.json --out OUT.json [--dtype float32|bfloat16]

See sam3tools/interactive_reference.py for the cases and output formats.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sam3tools.cli import Tool, quiet_transformers, write_json  # noqa: E402

tool = Tool("make_interactive_reference", "Reference interactive segmentation of transformers' eager Sam3TrackerModel.")
tool.checkpoint("Hugging Face sam3_video folder").cases_and_out()
tool.dtype(["float32", "bfloat16"], "the model's dtype (a bundle exported in it)")


def main(argv: list[str] | None = None) -> int:
    args = tool.parse(argv)

    import torch

    from sam3tools.checkpoint_io import CheckpointError
    from sam3tools.interactive_reference import load_interactive_cases, make_interactive_reference

    quiet_transformers(progress_bar=False)
    try:
        doc = load_interactive_cases(args.cases)
        base = os.path.dirname(os.path.abspath(args.cases))
        result = make_interactive_reference(args.checkpoint, doc, base, log=tool.log, dtype=getattr(torch, args.dtype))
    except (CheckpointError, ValueError, KeyError, OSError) as err:
        return tool.refuse(err)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
