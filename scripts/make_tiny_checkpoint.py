#!/usr/bin/env python
"""Make a randomly initialised SAM 3 checkpoint in Hugging Face format (build-time tool).

    make_tiny_checkpoint.py --out DIR [--seed N] [--image-size PX] [--preset tiny|bench] [--no-check]
                            [--video-config KEY=VALUE ...]

Writes config.json + model.safetensors (Sam3Model.save_pretrained), a real CLIP tokenizer built
offline from open_clip's bpe_simple_vocab_16e6.txt.gz (tokenizer.json, tokenizer_config.json; pad
token <|endoftext|> like facebook/sam3) and preprocessor_config.json / processor_config.json in the
layout of facebook/sam3 (Sam3Processor, size PXxPX, mean/std 0.5). Then reloads the folder with
Sam3Model.from_pretrained and AutoTokenizer and runs one forward as a sanity check.

Presets (eager float32 forward on the 2-core build CPU, torch 2.13.0+cpu, 2 threads):
  tiny   224 px default (any multiple of 14): ~1.9M parameters, ~0.03 s per forward (0.02 s at 112).
  full   1008 px: facebook/sam3's architecture, ~840M parameters, ~42 s per forward.
  bench  1008 px default: ~25M parameters, ~2.2 s per forward on a lightly loaded machine
         (vision ~1.0 s, text ~0.01 s, head ~1.1 s; 6-7.5 s while another 2-thread process runs);
         see sam3tools/checkpoint.py for the shapes.
Random weights give near-zero scores: tests choose their thresholds; the weights are never tuned.

--video-config KEY=VALUE (repeatable) sets a concept-tracking field of Sam3VideoConfig in config.json
(score_threshold_detection, det_nms_thresh, hotstart_delay, fill_hole_area, ...: the list is
sam3tools/concept_config.CONCEPT_FIELDS), typed by the field's default (true/false for booleans). It
changes config.json only: the weights of a seed are the same with or without it.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sam3tools.cli import Tool, quiet_torch  # noqa: E402

tool = Tool("make_tiny_checkpoint", "Make a randomly initialised SAM 3 checkpoint (Hugging Face format).")
tool.add("--out", required=True, help="output folder (created; existing files are overwritten)")
tool.add("--seed", type=int, default=0, help="torch.manual_seed before initialisation (default 0)")
tool.add("--image-size", type=int, default=None, help="resolution in pixels, a multiple of 14 (default: 224 tiny, 1008 bench)")
tool.add("--preset", choices=["tiny", "bench", "full"], default="tiny")
tool.add("--no-check", action="store_true", help="skip reloading the checkpoint and running a forward")
tool.add("--video-config", action="append", default=[], metavar="KEY=VALUE",
         help="set a concept-tracking field of Sam3VideoConfig (repeatable), e.g. hotstart_delay=2")


def main(argv: list[str] | None = None) -> int:
    args = tool.parse(argv)
    quiet_torch()

    t0 = time.time()
    from sam3tools.checkpoint import make_checkpoint, sam3_config_dict
    from sam3tools.concept_config import check_hotstart, field_defaults, parse_overrides

    try:
        sam3_config_dict(args.preset, args.image_size)
        video_config = parse_overrides(args.video_config)
        check_hotstart({**field_defaults(), **video_config})
    except ValueError as err:
        return tool.refuse(err)
    make_checkpoint(args.out, seed=args.seed, image_size=args.image_size, preset=args.preset, log=tool.log, video_config=video_config)
    settings = "".join(f", {k}={v}" for k, v in video_config.items())
    tool.log(f"wrote {args.out} ({args.preset}, seed {args.seed}{settings}) in {time.time() - t0:.1f} s")
    if not args.no_check:
        from sam3tools.checkpoint import sanity_check

        took = sanity_check(args.out)
        tool.log(f"reloaded with Sam3Model.from_pretrained and ran a forward ({took:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
