"""Reference video tracking by transformers' eager Sam3TrackerVideoModel (for the parity tests).

Cases file (JSON)::

    {"frames": ["f0.png", ...],            # the video's frames, in order (paths relative to the file)
     "cases": [{"name": "...", "steps": [
        {"op": "prompt", "frame": 0, "obj_id": 1, "box": [x1, y1, x2, y2]},                  # normalised
        {"op": "prompt", "frame": 0, "obj_id": 2, "points": [[x, y], ...], "labels": [1, 0]},
        {"op": "prompt", "frame": 0, "obj_id": 3, "mask": "mask.png"},                       # 0/255 PNG
        {"op": "propagate", "start": 0, "max_frames": null, "reverse": false}]}]}

Each prompt step runs ``model(session, frame_idx)`` on its frame, as transformers' examples do after
``add_inputs_to_inference_session``; each propagate step runs ``propagate_in_video_iterator``.
Output per step: ``{"frames": [{"frame", "obj_ids", "masks": [RLE], "score_logits": [...]}]}`` with
masks post-processed like ``Sam3TrackerVideoProcessor.post_process_masks`` (bilinear to the video
size, > 0).

Frames are preprocessed like images (sam3tools.reference.preprocess: Sam3ImageProcessor's steps) and
coordinates scale as ``float32(normalised) * resolution``, which is what the addon does.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint_io import model_image_size, preprocessing, read_config
from .reference import encode_rle, load_image, preprocess


def _outputs(out, height: int, width: int) -> dict:
    masks = F.interpolate(out.pred_masks.float(), (height, width), mode="bilinear", align_corners=False) > 0
    logits = out.object_score_logits.reshape(-1).float()
    return {
        "frame": int(out.frame_idx),
        "obj_ids": [int(i) for i in out.object_ids],
        "masks": [encode_rle(masks[i, 0].numpy()) for i in range(masks.shape[0])],
        "score_logits": [float(v) for v in logits.tolist()],
    }


def make_video_reference(checkpoint: str, doc: dict, base: str, log=None, dtype: torch.dtype = torch.float32) -> dict:
    """The tracker in ``dtype`` (float32, or bfloat16 for bundles exported so), its session too;
    prompt coordinates stay float32 as the processor gives them."""
    from transformers import Sam3TrackerVideoModel
    from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import Sam3TrackerVideoInferenceSession

    log = log or (lambda msg: None)
    raw = read_config(checkpoint)
    prep = preprocessing(checkpoint, model_image_size(raw))
    resolution = prep["resolution"]
    model = Sam3TrackerVideoModel.from_pretrained(checkpoint, dtype=dtype).eval()
    images = [load_image(os.path.join(base, f)) for f in doc["frames"]]
    width, height = images[0].size
    video = torch.cat([preprocess(img, resolution, prep["mean"], prep["std"]) for img in images], 0).to(dtype)
    results = {}
    with torch.inference_mode():
        for case in doc["cases"]:
            session = Sam3TrackerVideoInferenceSession(
                video=video, video_height=height, video_width=width, inference_device="cpu", dtype=dtype
            )
            steps = []
            for step in case["steps"]:
                if step["op"] == "prompt":
                    frame, obj = int(step["frame"]), int(step["obj_id"])
                    idx = session.obj_id_to_idx(obj)
                    if "mask" in step:
                        m = np.array(load_image(os.path.join(base, step["mask"])).convert("L")) > 127
                        mask = torch.from_numpy(m).float()[None, None]
                        if tuple(mask.shape[-2:]) != (resolution, resolution):
                            mask = F.interpolate(mask, (resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
                            mask = (mask >= 0.5).float()
                        session.add_mask_inputs(idx, frame, mask)
                        session.remove_point_inputs(idx, frame)
                    else:
                        coords, labels = [], []
                        if "box" in step:
                            x1, y1, x2, y2 = step["box"]
                            coords += [[x1, y1], [x2, y2]]
                            labels += [2, 3]
                        for p, lab in zip(step.get("points", []), step.get("labels", [])):
                            coords.append(list(p))
                            labels.append(int(lab))
                        pts = torch.tensor(coords, dtype=torch.float32) * resolution
                        session.add_point_inputs(
                            idx, frame,
                            {"point_coords": pts[None, None], "point_labels": torch.tensor(labels, dtype=torch.int32)[None, None]},
                        )
                        session.remove_mask_inputs(idx, frame)
                    session.obj_with_new_inputs = [obj]
                    out = model(inference_session=session, frame_idx=frame)
                    steps.append({"frames": [_outputs(out, height, width)]})
                elif step["op"] == "propagate":
                    frames = []
                    for out in model.propagate_in_video_iterator(
                        session, start_frame_idx=step.get("start"), max_frame_num_to_track=step.get("max_frames"),
                        reverse=bool(step.get("reverse", False)),
                    ):
                        frames.append(_outputs(out, height, width))
                    steps.append({"frames": frames})
                else:
                    raise ValueError(f"unknown step op {step['op']!r} in case {case['name']}")
            results[case["name"]] = steps
            log(f"{case['name']}: {sum(len(s['frames']) for s in steps)} frame outputs")
    return {"width": width, "height": height, "resolution": resolution, "cases": results}


def load_video_cases(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc.get("frames"), list) or not doc["frames"] or not isinstance(doc.get("cases"), list):
        raise ValueError(f"{path}: expected {{'frames': [...], 'cases': [...]}}")
    return doc
