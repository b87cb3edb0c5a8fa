"""Reference concept tracking (text prompts tracked through a video) by transformers' eager
``Sam3VideoModel`` + ``Sam3VideoProcessor``, for the native port's parity tests.

transformers would silently skip mask NMS and hole filling / sprinkle removal here (their optional
``kernels`` package is missing); cv_kernels.install_cv_kernels() gives it pure-torch ones, so the
whole algorithm runs: detector on every frame for every prompt, NMS, association with the tracked
masklets, new objects, hotstart removal, occlusion suppression, reconditioning, hole filling.

Cases file (JSON): a list of cases, or {"cases": [...]}; paths are relative to the file::

    {"name": "two_prompts_forward",
     "frames_dir": "frames",                 # lossless PNG frames, in natural order of their names
     "prompts": ["red disc", "green bar"],   # several concepts in one session
     "start_frame_index": 0,
     "direction": "forward",                  # or "backward"
     "max_frames": null,                      # optional: Sam3VideoModel's max_frame_num_to_track
     "config": {"hotstart_delay": 0}}         # optional: concept_config.CONCEPT_FIELDS overrides

or, as the server's API calls a session (concept_ops; "prompts" optional there: texts registered
up front without running a frame; "direction", "start_frame_index" and "max_frames" refused)::

    {"name": "ops_forward", "frames_dir": "frames", "config": {...},
     "ops": [{"op": "prompt", "text": "red disc", "frame": 0},
             {"op": "propagate", "start": 0, "direction": "forward", "max_frames": null},
             {"op": "remove", "obj_id": 3}]}

A case without ops is one fresh session: ``init_video_session``, ``add_text_prompt`` (all prompts),
``propagate_in_video_iterator(start_frame_idx, max_frame_num_to_track, reverse)``, and
``postprocess_outputs`` on each yielded frame at once (as transformers' examples do: with hotstart,
frames come out late and hide objects removed meanwhile). transformers' frame order: forward
processes start .. min(start + max_frames, n - 1); backward processes start - 1 down to
max(start - max_frames, 0) (the start frame itself is not processed backward).

Frames are preprocessed like images (reference.preprocess, as the addon does), then handed to the
session with add_new_frame. The processor is transformers' own class, built around the
checkpoint's tokenizer only (its image and video processors need torchvision, absent here; neither
is used by the calls above) with a pure-torch masks_to_boxes in place of torchvision's.

Output per case::

    {"width", "height", "resolution", "prompts", "direction", "start_frame_index", "max_frames",
     "settings": {field: value}  (the concept settings the model ran with),
     "frames": [  # in yield order
        {"frame_index", "object_ids", "scores" (obj_id_to_score: detection score at creation),
         "tracker_scores" (obj_id_to_tracker_score, 0.0 where absent, as postprocess_outputs uses),
         "masks" (COCO RLE at the video size, after postprocess_outputs' non-overlap rule),
         "boxes" (xyxy in video PIXELS, inclusive: masks_to_boxes of the masks before the non-overlap
                  rule, as postprocess_outputs computes them),
         "prompt_to_obj_ids" {prompt text: [ids]}, "removed_obj_ids", "suppressed_obj_ids"}],
     "processed": [per processed frame, processing order: what each mechanism did (concept_probe)],
     "stats": concept_probe.summarise}

and for a case with ops, in place of "prompts" .. "max_frames" and "frames"::

    {"width", "height", "resolution", "prompts" (the session's texts by prompt id), "settings",
     "ops": [  # in call order: the op's own keys (defaults filled in), then
        {..., "prompt_id" (prompt), "existed" (remove: the id was a tracked object),
         "calls" (propagate: propagate_in_video_iterator's start_frame_idx, max_frame_num_to_track,
                  reverse per call),
         "outputs": [per-frame records as "frames" above, in yield order; [] for remove],
         "frames_processed": [frame indices, processing order], "stats": summarise of this op's frames}],
     "processed", "stats" (over all the ops' frames)}

Each op's frames_processed and output frames are checked against the server's frame order
(concept_ops.op_frames) before the case's output is written.
"""
from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager

import numpy as np
import torch

from .checkpoint_io import load_tokenizer, model_image_size, preprocessing, read_config
from .concept_config import CONCEPT_FIELDS, check_hotstart, check_overrides
from .concept_ops import check_frames, check_ops, iterator_calls, op_frames
from .concept_probe import Probe, summarise
from .cv_kernels import install_cv_kernels
from .reference import encode_rle, load_image, preprocess

DIRECTIONS = ("forward", "backward")


def natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def frame_files(folder: str) -> list[str]:
    names = sorted((n for n in os.listdir(folder) if n.lower().endswith(".png")), key=natural_key)
    if not names:
        raise ValueError(f"no PNG frames in {folder}")
    return [os.path.join(folder, n) for n in names]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """torchvision.ops.masks_to_boxes in plain torch: (N, H, W) -> (N, 4) float xyxy, inclusive
    pixel indices of the extreme foreground pixels (an empty mask gives zeros)."""
    n = masks.shape[0]
    if n == 0:
        return torch.zeros((0, 4), device=masks.device, dtype=torch.float)
    m = masks != 0
    h, w = m.shape[-2:]
    cols, rows = m.any(dim=1), m.any(dim=2)  # (N, W), (N, H)
    xs = torch.arange(w, device=masks.device)
    ys = torch.arange(h, device=masks.device)
    x1 = torch.where(cols, xs, w).amin(dim=1)
    x2 = torch.where(cols, xs, -1).amax(dim=1)
    y1 = torch.where(rows, ys, h).amin(dim=1)
    y2 = torch.where(rows, ys, -1).amax(dim=1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).to(torch.float)
    return torch.where(m.flatten(1).any(dim=1)[:, None], boxes, torch.zeros_like(boxes))


def make_processor(tokenizer):
    """transformers' Sam3VideoProcessor around ``tokenizer`` alone (see the module docstring)."""
    import importlib

    # The module itself (the package's lazy attribute is a placeholder without torchvision).
    psv = importlib.import_module("transformers.models.sam3_video.processing_sam3_video")
    psv.masks_to_boxes = masks_to_boxes
    processor = object.__new__(psv.Sam3VideoProcessor)
    processor.tokenizer = tokenizer
    return processor


def load_concept_model(checkpoint: str, dtype: torch.dtype = torch.float32):
    from transformers import Sam3VideoModel

    from .compat import install_roi_align_shim

    install_roi_align_shim()
    install_cv_kernels()
    model, info = Sam3VideoModel.from_pretrained(checkpoint, dtype=dtype, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ValueError(f"the Sam3VideoModel weights in {checkpoint} are incomplete: {len(missing)} missing tensors (e.g. {missing[0]})")
    return model.to(dtype).eval()


@contextmanager
def settings_applied(model, overrides: dict):
    """The model's concept settings with ``overrides`` set on its attributes (Sam3VideoModel copies
    the config's values into attributes in __init__); restored afterwards."""
    saved = {name: getattr(model, name) for name in CONCEPT_FIELDS}
    try:
        for name, value in overrides.items():
            setattr(model, name, value)
        check_hotstart({name: getattr(model, name) for name in CONCEPT_FIELDS})
        yield {name: getattr(model, name) for name in CONCEPT_FIELDS}
    finally:
        for name, value in saved.items():
            setattr(model, name, value)


def check_case(case: dict) -> dict:
    for key in ("name", "frames_dir"):
        if key not in case:
            raise ValueError(f"a case needs {key!r}: {json.dumps(case)[:200]}")
    if "ops" not in case and "prompts" not in case:
        raise ValueError(f"case {case['name']}: a case needs 'prompts' or 'ops'")
    prompts = case.get("prompts", [])
    if not isinstance(prompts, list) or not all(isinstance(p, str) and p for p in prompts) or not (prompts or "ops" in case):
        raise ValueError(f"case {case['name']}: prompts must be a non-empty list of texts")
    overrides = check_overrides(case.get("config") or {})
    if "ops" in case:
        single = sorted({"direction", "start_frame_index", "max_frames"} & set(case))
        if single:
            raise ValueError(f"case {case['name']}: {', '.join(single)} belong to a case without ops (use a propagate op)")
        return {**case, "prompts": prompts, "ops": check_ops(case["name"], case["ops"]), "config": overrides}
    direction = case.get("direction", "forward")
    if direction not in DIRECTIONS:
        raise ValueError(f"case {case['name']}: direction must be forward or backward, got {direction!r}")
    return {**case, "direction": direction, "config": overrides}


def load_concept_cases(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    cases = doc.get("cases") if isinstance(doc, dict) else doc
    if not isinstance(cases, list) or not cases:
        raise ValueError(f"{path}: expected a list of cases or {{'cases': [...]}}")
    names = [c.get("name") for c in cases if isinstance(c, dict)]
    if len(names) != len(cases) or len(set(names)) != len(names):
        raise ValueError(f"{path}: every case needs its own name")
    return [check_case(c) for c in cases]


def _frame_output(processed: dict, raw, frame_index: int) -> dict:
    masks = processed["masks"].cpu().numpy()
    ids = [int(v) for v in processed["object_ids"].tolist()]
    tracker = raw.obj_id_to_tracker_score
    return {
        "frame_index": int(frame_index),
        "object_ids": ids,
        "scores": [float(v) for v in processed["scores"].float().tolist()],
        "tracker_scores": [float(tracker.get(i, 0.0)) for i in ids],
        "masks": [encode_rle(masks[i]) for i in range(masks.shape[0])],
        "boxes": [[float(v) for v in row] for row in processed["boxes"].tolist()],
        "prompt_to_obj_ids": {k: [int(v) for v in vs] for k, vs in processed["prompt_to_obj_ids"].items()},
        "removed_obj_ids": sorted(int(v) for v in (raw.removed_obj_ids or ())),
        "suppressed_obj_ids": sorted(int(v) for v in (raw.suppressed_obj_ids or ())),
    }


class ConceptRunner:
    """One loaded model + processor; run(case) per case."""

    def __init__(self, checkpoint: str, dtype: torch.dtype = torch.float32, log=None):
        self.log = log or (lambda msg: None)
        self.dtype = dtype
        raw = read_config(checkpoint)
        self.prep = preprocessing(checkpoint, model_image_size(raw))
        self.model = load_concept_model(checkpoint, dtype)
        self.processor = make_processor(load_tokenizer(checkpoint))
        self._videos: dict[str, tuple] = {}

    def video(self, folder: str) -> tuple[torch.Tensor, int, int]:
        """(pixel_values [T,3,R,R] float32, height, width) of a frames folder, read once."""
        if folder not in self._videos:
            images = [load_image(p) for p in frame_files(folder)]
            width, height = images[0].size
            if any(img.size != (width, height) for img in images):
                raise ValueError(f"the frames in {folder} differ in size")
            res, mean, std = self.prep["resolution"], self.prep["mean"], self.prep["std"]
            self._videos[folder] = (torch.cat([preprocess(img, res, mean, std) for img in images], 0), height, width)
        return self._videos[folder]

    def session(self, pixels: torch.Tensor, height: int, width: int):
        """A fresh inference session holding every frame (as add_new_frame), at the video's size."""
        session = self.processor.init_video_session(video=None, inference_device="cpu", dtype=self.dtype)
        for i in range(pixels.shape[0]):
            session.add_new_frame(pixels[i], frame_idx=i)
        session.video_height, session.video_width = height, width
        return session

    def _finish(self, case: dict, probe: Probe, debug: list | None, settings: dict, summary: str) -> dict:
        """What every case's output ends with: settings, processed records and stats."""
        first = probe.frames[0]["frame_index"] if probe.frames else None
        if debug is not None:
            debug.append({"name": case["name"], "frames": probe.debug})
        stats = summarise(probe.frames, first)
        stats["margins"] = probe.margins.report()
        self.log(f"{case['name']}: {summary}, {json.dumps({k: v for k, v in stats.items() if not isinstance(v, (dict, list))})}")
        return {
            "settings": {k: (v if isinstance(v, (bool, int, float)) else float(v)) for k, v in settings.items()},
            "processed": probe.frames,
            "stats": stats,
        }

    def run(self, case: dict, base: str, debug: list | None = None) -> dict:
        if "ops" in case:
            return self.run_ops(case, base, debug)
        pixels, height, width = self.video(os.path.join(base, case["frames_dir"]))
        start = int(case.get("start_frame_index", 0))
        reverse = case["direction"] == "backward"
        if not (0 <= start <= pixels.shape[0] - (0 if reverse else 1)) or (reverse and start == 0):
            raise ValueError(f"case {case['name']}: start_frame_index {start} is outside the {pixels.shape[0]} frames for {case['direction']}")
        max_frames = case.get("max_frames")
        session = self.session(pixels, height, width)
        self.processor.add_text_prompt(session, list(case["prompts"]))
        frames = []
        with settings_applied(self.model, case["config"]) as settings, torch.inference_mode():
            with Probe(self.model, debug=debug is not None) as probe:
                for out in self.model.propagate_in_video_iterator(
                    session, start_frame_idx=start, max_frame_num_to_track=max_frames, reverse=reverse
                ):
                    processed = self.processor.postprocess_outputs(session, out)
                    frames.append(_frame_output(processed, out, out.frame_idx))
        head = {"width": width, "height": height, "resolution": self.prep["resolution"], "prompts": list(case["prompts"]),
                "direction": case["direction"], "start_frame_index": start, "max_frames": max_frames}
        tail = self._finish(case, probe, debug, settings, f"{len(frames)} frames")
        return {**head, "settings": tail.pop("settings"), "frames": frames, **tail}

    def run_ops(self, case: dict, base: str, debug: list | None = None) -> dict:
        """A case with ops (concept_ops): one session, the ops in order."""
        pixels, height, width = self.video(os.path.join(base, case["frames_dir"]))
        n = pixels.shape[0]
        check_frames(case["name"], case["ops"], n)
        session = self.session(pixels, height, width)
        if case["prompts"]:
            self.processor.add_text_prompt(session, list(case["prompts"]))  # registered only, as a case without ops
        records = []
        with settings_applied(self.model, case["config"]) as settings, torch.inference_mode():
            with Probe(self.model, debug=debug is not None) as probe:
                for i, op in enumerate(case["ops"]):
                    done = len(probe.frames)
                    record = {**op, **self._op(session, op, n)}
                    mine = probe.frames[done:]
                    record["frames_processed"] = [f["frame_index"] for f in mine]
                    record["stats"] = summarise(mine, mine[0]["frame_index"] if mine else None)
                    want = op_frames(op, n)
                    if record["frames_processed"] != want or [o["frame_index"] for o in record["outputs"]] != want:
                        raise AssertionError(f"case {case['name']}, op {i}: processed {record['frames_processed']}, "
                                             f"output {[o['frame_index'] for o in record['outputs']]}, expected {want}")
                    records.append(record)
        head = {"width": width, "height": height, "resolution": self.prep["resolution"],
                "prompts": [session.prompts[k] for k in sorted(session.prompts)]}
        tail = self._finish(case, probe, debug, settings, f"{len(records)} ops, {len(probe.frames)} frames processed")
        return {**head, "settings": tail.pop("settings"), "ops": records, **tail}

    def _op(self, session, op: dict, num_frames: int) -> dict:
        """Runs one op; its outputs (per-frame records, in yield order) and what it called."""
        if op["op"] == "remove":
            existed = op["obj_id"] in session.obj_ids
            session.remove_object(op["obj_id"], strict=False)
            return {"existed": existed, "outputs": []}
        if op["op"] == "prompt":
            self.processor.add_text_prompt(session, op["text"])
            prompt_id = next(k for k, text in session.prompts.items() if text == op["text"])
            out = self.model(inference_session=session, frame_idx=op["frame"])
            processed = self.processor.postprocess_outputs(session, out)
            return {"prompt_id": int(prompt_id), "outputs": [_frame_output(processed, out, out.frame_idx)]}
        calls = iterator_calls(op["start"], op["direction"], op["max_frames"], num_frames)
        outputs = []
        for call in calls:
            for out in self.model.propagate_in_video_iterator(
                session, start_frame_idx=call["start_frame_idx"], max_frame_num_to_track=call["max_frame_num_to_track"], reverse=call["reverse"]
            ):
                processed = self.processor.postprocess_outputs(session, out)
                outputs.append(_frame_output(processed, out, out.frame_idx))
        return {"calls": [{k: v for k, v in c.items() if k != "frames"} for c in calls], "outputs": outputs}


def make_concept_reference(checkpoint: str, cases: list[dict], base: str, log=None, dtype: torch.dtype = torch.float32, debug: list | None = None) -> dict:
    """Runs every case; ``debug``: a list that receives each case's intermediate tensors."""
    runner = ConceptRunner(checkpoint, dtype, log)
    return {"dtype": str(dtype).replace("torch.", ""), "cases": {c["name"]: runner.run(c, base, debug) for c in cases}}


def mask_area(rle: dict) -> int:
    """Foreground pixels of one of the output's RLE masks (for tests and summaries)."""
    from pycocotools import mask as mask_utils

    return int(np.asarray(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")})))
