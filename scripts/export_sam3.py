#!/usr/bin/env python
"""Export a SAM 3 checkpoint to a model bundle for the server (build-time tool).

    export_sam3.py --checkpoint HF_DIR_OR_HUB_ID --out BUNDLE_DIR [--device cpu|cuda[:N]] [--dtype float32|bfloat16|float16]

Writes vision_backbone.pt, vision_neck.pt, text_encoder.pt, head_text.pt, head_text_boxes.pt,
pixel_decoder.pt (and the
video tracker's pieces for sam3_video checkpoints; TorchScript, traced on --device in --dtype and
checked against eager transformers), tokenizer.json (padding and truncation to 32 tokens built in)
and, last, manifest.json. Progress goes to stderr.

Exit status: 0 done; 2 a bad or incomplete checkpoint or bad arguments (one line on stderr saying
why); 1 the export failed (a piece did not reproduce eager).
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sam3tools.cli import Tool, quiet_transformers  # noqa: E402

tool = Tool("export_sam3", "Export a SAM 3 checkpoint to a model bundle (TorchScript + tokenizer.json + manifest.json).")
tool.checkpoint("Hugging Face model folder, or a hub id such as facebook/sam3 (needs network and HF_TOKEN)")
tool.add("--out", required=True, help="bundle folder to write")
tool.add("--device", default="cpu", help="device to trace on and serve from: cpu or cuda[:N] (default cpu)")
tool.dtype(["float32", "bfloat16", "float16"])


def main(argv: list[str] | None = None) -> int:
    args = tool.parse(argv)

    from sam3tools.checkpoint_io import CheckpointError
    from sam3tools.errors import ExportError, UsageError
    from sam3tools.export import export_bundle

    quiet_transformers()  # we report what matters ourselves
    try:
        export_bundle(args.checkpoint, args.out, device=args.device, dtype=args.dtype, log=tool.log)
    except (CheckpointError, UsageError) as err:
        return tool.refuse(err)
    except ExportError as err:
        return tool.refuse(f"export failed: {err}", 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
