"""Reference interactive segmentation by transformers' eager Sam3TrackerModel (for the parity tests).

Cases file (JSON)::

    {"image": "img.png",                      # relative to the cases file
     "cases": [{"name": "...", "calls": [
        {"multimask": true, "objects": [
            {"points": [[x, y], ...], "labels": [1, 0],   # normalised; labels 1 / 0
             "box": [x1, y1, x2, y2],                     # normalised corners (optional)
             "mask_from": [call, object]}]}]}]}           # feed that earlier call's best logits (optional)

Each object runs alone through ``Sam3TrackerModel.forward(pixel_values, input_points, input_labels,
input_boxes, input_masks, multimask_output)``, the image batch and point batch both 1, as
transformers' examples call it; coordinates scale as ``float32(normalised) * resolution``, which is
what the addon does. ``mask_from`` feeds the low-res logits of that object's best mask (highest
predicted IoU) as ``input_masks``. Output per call: ``{"objects": [{"masks": [RLE], "iou_scores":
[...], "object_score_logit": s}]}``, masks post-processed like ``Sam3TrackerProcessor.post_process_masks``
(bilinear to the image size, > 0).

transformers' ``Sam3TrackerModel.from_pretrained`` on a sam3_video checkpoint leaves the prompt
encoder and mask decoder uninitialised (they sit under ``tracker_model.`` there): the model is built
from the checkpoint's config and gets every tensor from ``Sam3TrackerVideoModel``'s load of the same
checkpoint, which maps them (all Sam3TrackerModel's tensors are among them).
"""
from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F

from .checkpoint_io import model_image_size, preprocessing, read_config
from .reference import encode_rle, load_image, preprocess


def load_image_tracker(checkpoint: str, dtype: torch.dtype = torch.float32):
    """Sam3TrackerModel with the weights Sam3TrackerVideoModel loads from a sam3_video checkpoint."""
    from transformers import Sam3TrackerModel, Sam3TrackerVideoModel

    video = Sam3TrackerVideoModel.from_pretrained(checkpoint, dtype=dtype).eval()
    model = Sam3TrackerModel(video.config).to(dtype).eval()
    source = video.state_dict()
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in source]
    if missing:
        raise ValueError(f"Sam3TrackerVideoModel lacks {len(missing)} of Sam3TrackerModel's tensors (e.g. {missing[0]})")
    model.load_state_dict({k: source[k] for k in wanted}, strict=True)
    return model


def make_interactive_reference(checkpoint: str, doc: dict, base: str, log=None, dtype: torch.dtype = torch.float32) -> dict:
    log = log or (lambda msg: None)
    raw = read_config(checkpoint)
    prep = preprocessing(checkpoint, model_image_size(raw))
    resolution = prep["resolution"]
    model = load_image_tracker(checkpoint, dtype)
    image = load_image(os.path.join(base, doc["image"]))
    width, height = image.size
    pixels = preprocess(image, resolution, prep["mean"], prep["std"]).to(dtype)
    results = {}
    with torch.inference_mode():
        for case in doc["cases"]:
            calls, best = [], []
            for call in case["calls"]:
                out_objects, best_objects = [], []
                for obj in call["objects"]:
                    kwargs = {}
                    if obj.get("points"):
                        kwargs["input_points"] = (torch.tensor(obj["points"], dtype=torch.float32) * resolution)[None, None].to(dtype)
                        kwargs["input_labels"] = torch.tensor(obj["labels"], dtype=torch.int32)[None, None]
                    if obj.get("box"):
                        kwargs["input_boxes"] = (torch.tensor(obj["box"], dtype=torch.float32) * resolution)[None, None].to(dtype)
                    if obj.get("mask_from") is not None:
                        c, o = obj["mask_from"]
                        kwargs["input_masks"] = best[c][o]
                    out = model(pixel_values=pixels, multimask_output=bool(call["multimask"]), **kwargs)
                    logits = out.pred_masks[0, 0]  # [K, m, m]
                    iou = out.iou_scores[0, 0].float()
                    masks = F.interpolate(logits[None].float(), (height, width), mode="bilinear", align_corners=False)[0] > 0
                    out_objects.append({
                        "masks": [encode_rle(masks[k].numpy()) for k in range(masks.shape[0])],
                        "iou_scores": [float(v) for v in iou.tolist()],
                        "object_score_logit": float(out.object_score_logits.reshape(-1)[0]),
                    })
                    best_objects.append(logits[int(torch.argmax(iou))][None, None].clone())
                calls.append({"objects": out_objects})
                best.append(best_objects)
            results[case["name"]] = calls
            log(f"{case['name']}: {len(calls)} calls")
    return {"width": width, "height": height, "resolution": resolution, "cases": results}


def load_interactive_cases(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc.get("image"), str) or not isinstance(doc.get("cases"), list):
        raise ValueError(f"{path}: expected {{'image': 'file.png', 'cases': [...]}}")
    return doc
