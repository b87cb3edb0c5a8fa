#!/usr/bin/env python
"""Reference outputs of transformers' eager Sam3Model for the parity tests (build-time tool).

    make_reference.py --checkpoint DIR --cases CASES.json --out OUT.json [--dump-pixels DIR]
                      [--dtype float32|bfloat16]

Runs every query of every case on its own (batch 1, float32 unless --dtype, CPU, the pure-torch roi_align shim),
preprocessing and post-processing exactly like Sam3Processor; see sam3tools/reference.py for the
cases/output formats. --dump-pixels writes each image's pixel_values as raw little-endian float32
[3, R, R] (NAME.f32) for exact preprocessing comparisons.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sam3tools.cli import Tool, quiet_transformers, write_json  # noqa: E402

tool = Tool("make_reference", "Reference outputs of transformers' eager Sam3Model.")
tool.checkpoint("Hugging Face SAM 3 folder").cases_and_out()
tool.add("--dump-pixels", default=None, help="folder for raw float32 pixel_values per image")
tool.dtype(["float32", "bfloat16"], "the model's dtype (a bundle exported in it)")


def main(argv: list[str] | None = None) -> int:
    args = tool.parse(argv)

    import torch

    from sam3tools.checkpoint_io import CheckpointError
    from sam3tools.reference import load_cases, make_reference

    quiet_transformers()
    try:
        doc = load_cases(args.cases)
        result = make_reference(args.checkpoint, doc, log=tool.log, dump_pixels=args.dump_pixels, dtype=getattr(torch, args.dtype))
    except (CheckpointError, ValueError, KeyError, OSError) as err:
        return tool.refuse(err, type_name=not isinstance(err, CheckpointError))
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
