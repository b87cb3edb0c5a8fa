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

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def log(msg: str) -> None:
    print(f"[make_reference] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Reference outputs of transformers' eager Sam3Model.")
    parser.add_argument("--checkpoint", required=True, help="Hugging Face SAM 3 folder")
    parser.add_argument("--cases", required=True, help="cases JSON file")
    parser.add_argument("--out", required=True, help="output JSON file")
    parser.add_argument("--dump-pixels", default=None, help="folder for raw float32 pixel_values per image")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the model's dtype (a bundle exported in it)")
    args = parser.parse_args(argv)

    import torch

    from transformers.utils import logging as hf_logging

    from sam3tools.checkpoint_io import CheckpointError
    from sam3tools.reference import load_cases, make_reference

    hf_logging.set_verbosity_error()
    try:
        doc = load_cases(args.cases)
        result = make_reference(args.checkpoint, doc, log=log, dump_pixels=args.dump_pixels, dtype=getattr(torch, args.dtype))
    except (CheckpointError, ValueError, KeyError, OSError) as err:
        print(f"make_reference: {type(err).__name__ + ': ' if not isinstance(err, CheckpointError) else ''}{err}", file=sys.stderr)
        return 2
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
