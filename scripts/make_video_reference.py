#!/usr/bin/env python3
"""Reference video tracking of transformers' eager Sam3TrackerVideoModel for the parity tests
(build-time tool).

    make_video_reference.py --checkpoint DIR --cases CASES.json --out OUT.json [--dtype float32|bfloat16]

See sam3tools/video_reference.py for the cases and output formats.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sam3tools.cli import Tool, quiet_transformers, write_json  # noqa: E402

tool = Tool("make_video_reference", "Reference video tracking of transformers' eager Sam3TrackerVideoModel.")
tool.checkpoint("Hugging Face sam3_video folder").cases_and_out()
tool.dtype(["float32", "bfloat16"], "the tracker's dtype (a bundle exported in it)")


def main(argv: list[str] | None = None) -> int:
    args = tool.parse(argv)

    import torch

    from sam3tools.checkpoint_io import CheckpointError
    from sam3tools.compat import install_roi_align_shim
    from sam3tools.video_reference import load_video_cases, make_video_reference

    install_roi_align_shim()
    quiet_transformers(progress_bar=False)
    try:
        doc = load_video_cases(args.cases)
        base = os.path.dirname(os.path.abspath(args.cases))
        result = make_video_reference(args.checkpoint, doc, base, log=tool.log, dtype=getattr(torch, args.dtype))
    except (CheckpointError, ValueError, KeyError, OSError) as err:
        return tool.refuse(err)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
