#!/usr/bin/env python
"""The Python side of `npm run bench`: transformers' eager Sam3Model on the same weights, image and
thread count as our side, timed the way a Python server would run it (build-time tool).

    bench_python.py --checkpoint DIR --image FILE --case latency|prompts|rle --threads N
                    [--runs 5] [--warmup 1] [--prompts a,b,c] [--masks FILE] --out OUT.json

latency  preprocess (PIL decode, EXIF, resize, normalise) + forward + post-process, per run.
prompts  the vision encoder once, then text encoder + head per prompt (what a Python server with a
         feature cache does), for the given prompts; one sample = the whole set.
rle      pycocotools.mask.encode on the masks in FILE (JSON [{h, w, data: row-major 0/1 bytes as a
         latin-1 string}]); reports the strings so the caller can check ours are equal.
Every sample is in seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint")
    p.add_argument("--image")
    p.add_argument("--case", required=True, choices=["latency", "prompts", "rle"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--prompts", default="person")
    p.add_argument("--threshold", type=float, default=0.5)
    p.add_argument("--masks")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    result: dict = {"case": args.case, "threads": args.threads, "torch": torch.__version__}

    if args.case == "rle":
        from pycocotools import mask as mask_utils

        doc = json.load(open(args.masks))
        # Row-major (C order) uint8 masks, as a Python server has them from torch; pycocotools needs
        # Fortran order, so the conversion is part of the work (as on our side).
        masks = [np.frombuffer(m["data"].encode("latin-1"), dtype=np.uint8).reshape(m["h"], m["w"]).copy() for m in doc]
        strings = [mask_utils.encode(np.asfortranarray(m))["counts"].decode() for m in masks]  # warm-up + the strings to compare
        samples = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            for m in masks:
                mask_utils.encode(np.asfortranarray(m))
            samples.append(time.perf_counter() - t0)
        result.update(samples=samples, strings=strings, megapixels=sum(m.size for m in masks) / 1e6)
        json.dump(result, open(args.out, "w"))
        return 0

    import transformers

    from sam3tools.checkpoint_io import load_model, load_tokenizer, model_image_size, preprocessing, read_config
    from sam3tools.reference import load_image, post_process, preprocess

    result["transformers"] = transformers.__version__
    model, _ = load_model(args.checkpoint, torch.float32, "cpu")
    tokenizer = load_tokenizer(args.checkpoint)
    pre = preprocessing(args.checkpoint, model_image_size(read_config(args.checkpoint)))
    prompts = [s for s in args.prompts.split("|") if s]

    def tokens(text: str):
        enc = tokenizer([text], padding="max_length", max_length=32, truncation=True, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def full_pipeline():
        img = load_image(args.image)
        px = preprocess(img, pre["resolution"], pre["mean"], pre["std"])
        ids, am = tokens(prompts[0])
        out = model(pixel_values=px, input_ids=ids, attention_mask=am)
        post_process(out, args.threshold, img.height, img.width)

    def prompts_pipeline():
        img = load_image(args.image)
        px = preprocess(img, pre["resolution"], pre["mean"], pre["std"])
        vision = model.get_vision_features(pixel_values=px)
        for text in prompts:
            ids, am = tokens(text)
            out = model(vision_embeds=vision, input_ids=ids, attention_mask=am)
            post_process(out, args.threshold, img.height, img.width)

    fn = full_pipeline if args.case == "latency" else prompts_pipeline
    with torch.inference_mode():
        for _ in range(args.warmup):
            fn()
        samples = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    result.update(samples=samples, prompts=prompts)
    json.dump(result, open(args.out, "w"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
