"""Reference outputs of transformers' eager Sam3Model (float32, CPU) for the server's parity tests.

Everything mirrors what ``Sam3Processor`` + ``Sam3Model`` + ``post_process_instance_segmentation``
do in transformers 5.17 (whose image processor cannot be imported here: it needs torchvision), step
by step, so the server's native pipeline can be compared with it number for number.

Cases file (JSON)::

    {"images": {"name": "/path/to/file.jpg", ...},
     "cases": [{"name": str, "image": name, "threshold": float,
                "queries": [{"text": str|null, "boxes": [[x, y, w, h], ...]|null, "labels": [true|false, ...]|null}]}],
     "tokens": ["prompt", ...]}

Each query of each case runs on its own (batch 1). Output::

    {"cases": {name: {"image_size": {"width", "height"},
                      "queries": [{"text_used", "input_ids", "scores", "boxes" ([x, y, w, h] normalised),
                                   "masks" (COCO RLE {size: [h, w], counts}), "all_scores", "all_boxes_xyxy"}]}},
     "tokens": {prompt: {"input_ids", "attention_mask"}},
     "images": {name: {"width", "height", "pixel_values": {"shape", "mean", "min", "max", "sha256"}}}}
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint_io import load_model, load_tokenizer, model_image_size, preprocessing, read_config
from .tokenizer import TEXT_MAX_LENGTH

VISUAL_PROMPT = "visual"
MASK_THRESHOLD = 0.5


def load_image(path: str):
    """Decoded as transformers' users do: PIL, EXIF orientation applied, RGB."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")


def preprocess(image, resolution: int, mean, std) -> torch.Tensor:
    """pixel_values [1, 3, R, R] float32, exactly as Sam3ImageProcessor (TorchvisionBackend) makes them.

    Mirrors, for one RGB PIL image on CPU:
    * ``tvF.pil_to_tensor``: ``torch.from_numpy(np.array(img)).permute(2, 0, 1)``, no copy to
      contiguous (the layout does not change the result; kept identical anyway);
    * ``TorchvisionBackend.resize`` -> torchvision's ``resize_image`` with BILINEAR and antialias=True:
      skipped when the size already matches; otherwise, for a uint8 tensor on a CPU with AVX2,
      ``F.interpolate`` runs directly on uint8 (torchvision's native uint8 path; without AVX2
      torchvision would go through float32 and round, which differs by 1 on some pixels);
    * ``rescale_and_normalize``: rescale and normalise fused by ``_fuse_mean_std_and_rescale_factor``
      into one ``(x.float() - mean) / std`` with mean = image_mean / rescale_factor (127.5 for
      facebook/sam3), which is what ``tvF.normalize`` computes (``sub_`` then ``div_``).
    """
    tensor = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
    batch = tensor[None]
    if tuple(batch.shape[-2:]) != (resolution, resolution):
        batch = F.interpolate(batch, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    pixels = batch.to(torch.float32)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return pixels.sub(mean_t).div(std_t)


def pixel_stats(pixel_values: torch.Tensor) -> dict:
    pv = pixel_values[0]
    return {
        "shape": list(pv.shape),
        "mean": [float(v) for v in pv.double().mean(dim=(1, 2)).tolist()],
        "min": [float(v) for v in pv.amin(dim=(1, 2)).tolist()],
        "max": [float(v) for v in pv.amax(dim=(1, 2)).tolist()],
        "sha256": hashlib.sha256(pv.contiguous().numpy().astype("<f4").tobytes()).hexdigest(),
    }


def tokenize(tokenizer, text: str) -> tuple[list[int], list[int]]:
    enc = tokenizer(text, padding="max_length", max_length=TEXT_MAX_LENGTH, truncation=True)
    return list(enc["input_ids"]), list(enc["attention_mask"])


def encode_rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def post_process(outputs, threshold: float, height: int, width: int) -> dict:
    """Sam3Processor.post_process_instance_segmentation for one image (target size = original size),
    then sorted by score (descending, stable) with boxes as normalised [x, y, w, h]."""
    # float(): a no-op in float32; bfloat16 outputs (a model run in bf16) are scored in float32.
    scores = outputs.pred_logits[0].float().sigmoid() * outputs.presence_logits[0].float().sigmoid()
    boxes = outputs.pred_boxes[0].float()
    keep = scores > threshold
    kept_scores = scores[keep]
    kept_boxes = boxes[keep]
    masks = outputs.pred_masks[0][keep].float().sigmoid()
    if len(masks) > 0:
        masks = F.interpolate(masks.unsqueeze(0), size=(height, width), mode="bilinear", align_corners=False).squeeze(0)
    binary = masks > MASK_THRESHOLD
    order = torch.sort(kept_scores, descending=True, stable=True).indices
    kept_scores, kept_boxes, binary = kept_scores[order], kept_boxes[order], binary[order]
    xywh = torch.stack(
        [kept_boxes[:, 0], kept_boxes[:, 1], kept_boxes[:, 2] - kept_boxes[:, 0], kept_boxes[:, 3] - kept_boxes[:, 1]], dim=-1
    )
    return {
        "scores": [float(v) for v in kept_scores.tolist()],
        "boxes": [[float(v) for v in row] for row in xywh.tolist()],
        "masks": [encode_rle(m.numpy()) for m in binary.cpu()],
        "all_scores": [float(v) for v in scores.tolist()],
        "all_boxes_xyxy": [[float(v) for v in row] for row in boxes.tolist()],
    }


def query_inputs(query: dict, tokenizer) -> dict:
    text = query.get("text")
    boxes = query.get("boxes") or None
    labels = query.get("labels")
    if text is None and boxes is None:
        raise ValueError("a query needs text, boxes or both")
    text_used = text if text is not None else VISUAL_PROMPT  # what Sam3Processor does for box-only prompts
    ids, mask = tokenize(tokenizer, text_used)
    inputs = {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "attention_mask": torch.tensor([mask], dtype=torch.long),
    }
    if boxes is not None:
        if labels is None:
            labels = [True] * len(boxes)
        if len(labels) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels")
        cxcywh = [[x + w / 2, y + h / 2, w, h] for x, y, w, h in boxes]
        inputs["input_boxes"] = torch.tensor([cxcywh], dtype=torch.float32)
        inputs["input_boxes_labels"] = torch.tensor([[1 if flag else 0 for flag in labels]], dtype=torch.long)
    return {"text_used": text_used, "input_ids": ids, "inputs": inputs}


def make_reference(checkpoint: str, doc: dict, log=None, dump_pixels: str | None = None, dtype: torch.dtype = torch.float32) -> dict:
    """The model in ``dtype`` (float32, or bfloat16 for bundles exported so): pixel values and boxes
    are cast to it as a Sam3Processor user does with ``.to(dtype)``; scores and masks are
    post-processed in float32."""
    log = log or (lambda msg: None)
    prep = preprocessing(checkpoint, model_image_size(read_config(checkpoint)))
    tokenizer = load_tokenizer(checkpoint)
    model, _ = load_model(checkpoint, dtype, "cpu")
    resolution = prep["resolution"]
    images = doc.get("images") or {}
    result: dict = {"cases": {}, "tokens": {}, "images": {}}
    cache: dict = {}

    def image_entry(name: str):
        if name not in cache:
            if name not in images:
                raise ValueError(f"case refers to unknown image '{name}'")
            img = load_image(images[name])
            pixel_values = preprocess(img, resolution, prep["mean"], prep["std"])
            with torch.no_grad():
                vision = model.get_vision_features(pixel_values.to(dtype))
            cache[name] = (img.size, vision)
            result["images"][name] = {"width": img.size[0], "height": img.size[1], "pixel_values": pixel_stats(pixel_values)}
            if dump_pixels:
                os.makedirs(dump_pixels, exist_ok=True)
                pixel_values[0].contiguous().numpy().astype("<f4").tofile(os.path.join(dump_pixels, f"{name}.f32"))
        return cache[name]

    for case in doc.get("cases") or []:
        (width, height), vision = image_entry(case["image"])
        threshold = float(case.get("threshold", 0.5))
        queries = []
        for query in case.get("queries") or []:
            prepared = query_inputs(query, tokenizer)
            if "input_boxes" in prepared["inputs"]:
                prepared["inputs"]["input_boxes"] = prepared["inputs"]["input_boxes"].to(dtype)
            with torch.no_grad():
                outputs = model(vision_embeds=vision, **prepared["inputs"])
            entry = {"text_used": prepared["text_used"], "input_ids": prepared["input_ids"]}
            entry.update(post_process(outputs, threshold, height, width))
            queries.append(entry)
        result["cases"][case["name"]] = {"image_size": {"width": width, "height": height}, "queries": queries}
        log(f"case {case['name']}: {len(queries)} queries, {[len(q['scores']) for q in queries]} kept")

    for prompt in doc.get("tokens") or []:
        ids, mask = tokenize(tokenizer, prompt)
        result["tokens"][prompt] = {"input_ids": ids, "attention_mask": mask}
    return result


def load_cases(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return doc
