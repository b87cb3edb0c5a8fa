#!/usr/bin/env python
"""The Python side of `npm run bench`: transformers' eager Sam3Model on the same weights, image and
thread count as our side, timed the way a Python server would run it (build-time tool).

    bench_python.py --checkpoint DIR --image FILE --case latency|prompts|rle --threads N
                    [--device cpu|cuda[:N]] [--dtype float32|bfloat16]
                    [--runs 5] [--warmup 1] [--prompts a,b,c] [--masks FILE] --out OUT.json

--device/--dtype put the model on that device in that dtype (our side's bundle is exported in
bfloat16 off the CPU, and `npm run bench -- --device cuda` passes the same here). Decoding and
preprocessing stay on the CPU, as Sam3Processor does them; the pixels then move to the device.
Every sample waits for the device to finish (the masks come back to the CPU for RLE anyway).

latency  preprocess (PIL decode, EXIF, resize, normalise) + forward + post-process, per run.
prompts  the vision encoder once, then text encoder + head per prompt (what a Python server with a
         feature cache does), for the given prompts; one sample = the whole set.
concept  Sam3VideoModel eager (concept tracking: text prompts found and tracked through the video) with
         Sam3VideoProcessor, and the pure-torch mask NMS and connected components of
         sam3tools/cv_kernels.py injected (without the optional `kernels` package transformers
         silently SKIPS NMS and hole filling, doing less work than the native port). --concept-config
         (JSON, Sam3VideoConfig field names) is set on the model's attributes. The frames in --frames
         are preprocessed up front and added to a fresh session; one sample = add_text_prompt for
         every --prompts text, then propagate_in_video_iterator forward over every frame with
         postprocess_outputs on each yielded frame and every mask RLE-encoded with pycocotools.
         Reports each frame's object ids (last sample) so the caller can compare, and per sample the
         seconds spent in the injected kernels (kernel_seconds: nms, cc_2d). --warmup-frames N:
         warm-up samples propagate over the first N frames only (0: all).
click    Sam3TrackerModel eager on a cached image (get_image_embeddings once): one sample = one click,
         3 masks post-processed and RLE-encoded (click_benchmark).
video    Sam3TrackerVideoModel eager: the frames in --frames (PNG, sorted) preprocessed up front (the
         processor's init_video_session does that too), --objects box prompts on frame 0, then one
         sample = propagate_in_video_iterator forward over every frame with each frame's masks
         post-processed (bilinear to the video size, > 0) and RLE-encoded, as a server returns them.
rle      pycocotools.mask.encode on the masks in FILE (JSON [{h, w, data: row-major 0/1 bytes as a
         latin-1 string}]); reports the strings so the caller can check ours are equal.
Every sample is in seconds.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from sam3tools.cli import Tool, quiet_torch, write_json  # noqa: E402

tool = Tool("bench_python")
tool.add("--checkpoint")
tool.add("--image")
tool.add("--case", required=True, choices=["latency", "prompts", "rle", "video", "concept", "click"])
tool.add("--threads", type=int, default=2)
tool.add("--runs", type=int, default=5)
tool.add("--warmup", type=int, default=1)
tool.add("--prompts", default="person")
tool.add("--threshold", type=float, default=0.5)
tool.add("--masks")
tool.add("--frames")
tool.add("--objects", type=int, default=1)
tool.add("--concept-config", default="{}")
tool.add("--warmup-frames", type=int, default=0)
tool.add("--device", default="cpu")
tool.dtype(["float32", "bfloat16"])
tool.add("--out", required=True)


def main(argv: list[str] | None = None) -> int:
    args = tool.parse(argv)

    import numpy as np
    import torch

    quiet_torch()
    torch.set_num_threads(args.threads)
    result: dict = {"case": args.case, "threads": args.threads, "torch": torch.__version__, "device": args.device, "dtype": args.dtype}
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)

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
        write_json(args.out, result)
        return 0

    if args.case == "click":
        result.update(click_benchmark(args, device, dtype))
        write_json(args.out, result)
        return 0

    if args.case in ("video", "concept"):
        result.update(video_benchmark(args) if args.case == "video" else concept_benchmark(args))
        write_json(args.out, result)
        return 0

    import transformers

    from sam3tools.checkpoint_io import load_model, load_tokenizer, model_image_size, preprocessing, read_config
    from sam3tools.reference import load_image, post_process, preprocess

    result["transformers"] = transformers.__version__
    model, _ = load_model(args.checkpoint, dtype, device)
    tokenizer = load_tokenizer(args.checkpoint)
    pre = preprocessing(args.checkpoint, model_image_size(read_config(args.checkpoint)))
    prompts = [s for s in args.prompts.split("|") if s]

    def tokens(text: str):
        enc = tokenizer([text], padding="max_length", max_length=32, truncation=True, return_tensors="pt")
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)

    def pixels(img):
        return preprocess(img, pre["resolution"], pre["mean"], pre["std"]).to(device=device, dtype=dtype)

    def full_pipeline():
        img = load_image(args.image)
        px = pixels(img)
        ids, am = tokens(prompts[0])
        out = model(pixel_values=px, input_ids=ids, attention_mask=am)
        post_process(out, args.threshold, img.height, img.width)

    def prompts_pipeline():
        img = load_image(args.image)
        px = pixels(img)
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
            synchronize(device)
            samples.append(time.perf_counter() - t0)
    result.update(samples=samples, prompts=prompts)
    write_json(args.out, result)
    return 0


def click_benchmark(args, device, dtype) -> dict:
    """Sam3TrackerModel eager on a cached image: get_image_embeddings once (what a Python server
    with a feature cache keeps), then one sample = one click (multimask_output, as SAM's annotation
    tools ask) and its 3 masks post-processed like Sam3TrackerProcessor.post_process_masks and
    RLE-encoded with pycocotools (our side returns RLE too)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from pycocotools import mask as mask_utils

    from sam3tools.checkpoint_io import model_image_size, preprocessing, read_config
    from sam3tools.interactive_reference import load_image_tracker
    from sam3tools.reference import load_image, preprocess

    model = load_image_tracker(args.checkpoint, dtype).to(device)
    pre = preprocessing(args.checkpoint, model_image_size(read_config(args.checkpoint)))
    img = load_image(args.image)
    res = pre["resolution"]
    with torch.inference_mode():
        embeddings = model.get_image_embeddings(preprocess(img, res, pre["mean"], pre["std"]).to(device=device, dtype=dtype))
        points = (torch.tensor([[0.45, 0.5]], dtype=torch.float32) * res)[None, None].to(device=device, dtype=dtype)
        labels = torch.ones(1, 1, 1, dtype=torch.int32, device=device)

        def click():
            out = model(image_embeddings=embeddings, input_points=points, input_labels=labels, multimask_output=True)
            masks = F.interpolate(out.pred_masks[0].float(), (img.height, img.width), mode="bilinear", align_corners=False)[0] > 0
            for m in masks.cpu().numpy():
                mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))

        for _ in range(args.warmup):
            click()
        samples = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            click()
            synchronize(device)
            samples.append(time.perf_counter() - t0)
    return {"samples": samples}


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def video_box(i: int) -> list[float]:
    """The i-th object's box prompt (normalised x1, y1, x2, y2); bench/run.ts uses the same."""
    return [0.05 + 0.22 * i, 0.2, 0.22 + 0.22 * i, 0.7]


def video_benchmark(args) -> dict:
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import Sam3TrackerVideoModel
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import Sam3TrackerVideoInferenceSession

    from sam3tools.checkpoint_io import model_image_size, preprocessing, read_config
    from sam3tools.compat import install_roi_align_shim
    from sam3tools.reference import encode_rle, load_image, preprocess

    install_roi_align_shim()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    pre = preprocessing(args.checkpoint, model_image_size(read_config(args.checkpoint)))
    r = pre["resolution"]
    model = Sam3TrackerVideoModel.from_pretrained(args.checkpoint, dtype=dtype).to(device).eval()
    files = sorted(f for f in os.listdir(args.frames) if f.endswith(".png"))
    images = [load_image(os.path.join(args.frames, f)) for f in files]
    width, height = images[0].size
    video = torch.cat([preprocess(img, r, pre["mean"], pre["std"]) for img in images], 0).to(device=device, dtype=dtype)

    def run():
        session = Sam3TrackerVideoInferenceSession(video=video, video_height=height, video_width=width, inference_device=device, dtype=dtype)
        for i in range(args.objects):
            idx = session.obj_id_to_idx(i + 1)
            x1, y1, x2, y2 = video_box(i)
            pts = (torch.tensor([[x1, y1], [x2, y2]], dtype=torch.float32) * r).to(device)  # float32, as the processor gives them
            labels = torch.tensor([[[2, 3]]], dtype=torch.int32, device=device)
            session.add_point_inputs(idx, 0, {"point_coords": pts[None, None], "point_labels": labels})
            session.obj_with_new_inputs = [i + 1]
            model(inference_session=session, frame_idx=0)
        t0 = time.perf_counter()
        frames = 0
        for out in model.propagate_in_video_iterator(session, start_frame_idx=0):
            masks = F.interpolate(out.pred_masks.float(), (height, width), mode="bilinear", align_corners=False) > 0
            for k in range(masks.shape[0]):
                encode_rle(masks[k, 0].cpu().numpy())
            out.object_score_logits.float().sigmoid().tolist()
            frames += 1
        synchronize(device)
        return time.perf_counter() - t0, frames

    with torch.inference_mode():
        for _ in range(args.warmup):
            run()
        samples, frames = [], 0
        for _ in range(args.runs):
            took, frames = run()
            samples.append(took)
    return {"samples": samples, "frames": frames, "objects": args.objects, "device": args.device, "dtype": args.dtype, "transformers": transformers.__version__, "video": {"width": width, "height": height, "frames": len(files)}}


def timed_cv_kernels() -> dict:
    """Wraps the injected pure-torch kernels (transformers' cv_utils_kernel) with timers; returns the
    dict of seconds spent in each since its last reset (the caller resets it per sample)."""
    from transformers.models.sam3_video import modeling_sam3_video as msv

    base = msv.cv_utils_kernel
    spent = {"nms": 0.0, "cc_2d": 0.0}

    def timed(fn, key):
        def call(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t0

        return staticmethod(call)

    msv.cv_utils_kernel = type("TimedCvKernels", (), {"generic_nms": timed(base.generic_nms, "nms"), "cc_2d": timed(base.cc_2d, "cc_2d")})()
    return spent


def concept_benchmark(args) -> dict:
    """Concept tracking (see the module docstring); samples in seconds, per-frame objects of the last."""
    import torch
    import transformers

    from sam3tools.checkpoint_io import load_tokenizer, model_image_size, preprocessing, read_config
    from sam3tools.concept_config import check_overrides
    from sam3tools.concept_reference import load_concept_model, make_processor, settings_applied
    from sam3tools.reference import encode_rle, load_image, preprocess

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    overrides = check_overrides(json.loads(args.concept_config))
    prompts = [s for s in args.prompts.split("|") if s]
    pre = preprocessing(args.checkpoint, model_image_size(read_config(args.checkpoint)))
    model = load_concept_model(args.checkpoint, dtype).to(device)  # installs the NMS / components kernels
    kernel_time = timed_cv_kernels()
    processor = make_processor(load_tokenizer(args.checkpoint))
    files = sorted(f for f in os.listdir(args.frames) if f.endswith(".png"))
    images = [load_image(os.path.join(args.frames, f)) for f in files]
    width, height = images[0].size
    pixels = [preprocess(img, pre["resolution"], pre["mean"], pre["std"])[0].to(device=device, dtype=dtype) for img in images]

    def run(max_frames=None):
        session = processor.init_video_session(video=None, inference_device=device, dtype=dtype)
        for i, px in enumerate(pixels):
            session.add_new_frame(px, frame_idx=i)
        session.video_height, session.video_width = height, width
        kernel_time.update(nms=0.0, cc_2d=0.0)
        t0 = time.perf_counter()
        processor.add_text_prompt(session, prompts)
        objects = []
        for out in model.propagate_in_video_iterator(session, start_frame_idx=0, max_frame_num_to_track=max_frames):
            processed = processor.postprocess_outputs(session, out)
            masks = processed["masks"].cpu().numpy()
            [encode_rle(masks[k]) for k in range(masks.shape[0])]
            ids = [int(v) for v in processed["object_ids"].tolist()]
            processed["scores"].float().tolist()
            processed["boxes"].tolist()
            objects.append({"frame_index": int(out.frame_idx), "object_ids": ids})
        synchronize(device)
        return time.perf_counter() - t0, objects, dict(kernel_time)

    with settings_applied(model, overrides) as settings, torch.inference_mode():
        for _ in range(args.warmup):
            run(args.warmup_frames - 1 if args.warmup_frames > 0 else None)
        samples, objects, kernels = [], [], []
        for _ in range(args.runs):
            took, objects, spent = run()
            samples.append(took)
            kernels.append(spent)
    settings = {k: (v if isinstance(v, (bool, int, float)) else float(v)) for k, v in settings.items()}
    return {"samples": samples, "frames": len(objects), "objects": objects, "prompts": prompts, "settings": settings, "kernel_seconds": kernels,
            "transformers": transformers.__version__, "video": {"width": width, "height": height, "frames": len(files)}}


if __name__ == "__main__":
    sys.exit(main())
