#!/usr/bin/env python3
"""Reference video tracking of transformers' eager Sam3TrackerVideoModel for the parity tests
(build-time tool).

    make_video_reference.py --checkpoint DIR --cases CASES.json --out OUT.json [--dtype float32|bfloat16]

See sam3tools/video_reference.py for the cases and output formats.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def log(msg: str) -> None:
    print(f"[make_video_reference] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Reference video tracking of transformers' eager Sam3TrackerVideoModel.")
    parser.add_argument("--checkpoint", required=True, help="Hugging Face sam3_video folder")
    parser.add_argument("--cases", required=True, help="cases JSON file")
    parser.add_argument("--out", required=True, help="output JSON file")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the tracker's dtype (a bundle exported in it)")
    args = parser.parse_args(argv)

    import torch

    from transformers.utils import logging as hf_logging

    from sam3tools.checkpoint_io import CheckpointError
    from sam3tools.compat import install_roi_align_shim
    from sam3tools.video_reference import load_video_cases, make_video_reference

    install_roi_align_shim()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        doc = load_video_cases(args.cases)
        result = make_video_reference(args.checkpoint, doc, os.path.dirname(os.path.abspath(args.cases)), log=log, dtype=getattr(torch, args.dtype))
    except (CheckpointError, ValueError, KeyError, OSError) as err:
        print(f"make_video_reference: {err}", file=sys.stderr)
        return 2
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
