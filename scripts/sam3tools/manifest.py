"""manifest.json: what a bundle holds (every file with its sha256), what made it, and the facts the
addon reads (shapes, tokenizer settings, normalisation, the tracker's config). It is written last and
atomically: a bundle with a manifest is complete.
"""
from __future__ import annotations

import datetime
import json
import os
import platform

from .checkpoint_io import sha256_file

EXPORTER_VERSION = "8"
BUNDLE_FORMAT = "sam3-bundle"
# 7: video.concept, the concept-tracking settings of the checkpoint's Sam3VideoConfig.
# 8: tracker_interactive_multi / _single, interactive segmentation on images (Sam3TrackerModel).
BUNDLE_FORMAT_VERSION = 8
# The detector's pieces, in the manifest's order (the tracker's: tracker_export.TRACKER_FILES).
DETECTOR_FILES = ("vision_backbone", "vision_neck", "text_encoder", "head_text", "head_text_boxes", "pixel_decoder", "pixel_skip", "pixel_split")
SIGNATURES = {
    "vision_backbone": "(pixel_values[B,3,R,R] dtype) -> (hidden[B,g*g,V],)",
    "vision_neck": "(hidden[B,g*g,V]) -> (f0, f1, f2, p2, e0[B,h*w,D]: the first DETR encoder layer's self-attention block)",
    "text_encoder": "(input_ids int64[N,L], attention_mask int64[N,L]) -> (text_features[N,L,D],)",
    "head_text": "(f2, p2, e0, text_features[B,L,D], text_mask bool[B,L]) -> (pred_logits[B,Q], pred_boxes[B,Q,4] xyxy, presence_logits[B,1], mask_embeddings[B,Q,C], mask_bias[B,Q], visual[B,C,h,w])",
    "head_text_boxes": "(f2, p2, e0, text_features[B,L,D], text_mask bool[B,L], input_boxes[B,K,4] cxcywh, input_boxes_labels int64[B,K] 1/0/-10 pad) -> (pred_logits, pred_boxes, presence_logits, mask_embeddings, mask_bias, visual)",
    "pixel_decoder": "(f0[1|B,C,M,M], f1[1|B,C,M/2,M/2], visual[B,C,h,w]) -> (pixel_embeddings[B,C,M,M],); pred_masks[b,q] = mask_embeddings[b,q] . pixel_embeddings[b] + mask_bias[b,q]",
    "pixel_skip": "(f0[B,C,M,M], f1[B,C,M/2,M/2]) -> (s0, s1): the pixel decoder's convolutions of its skip inputs, once per image",
    "pixel_split": "(s0[1|B,C,M,M], s1[1|B,C,M/2,M/2], visual[B,C,h,w]) -> (pixel_embeddings[B,C,M,M],): pixel_decoder from pixel_skip's outputs",
}


def files_of_manifest(path: str) -> list[str]:
    """The plain file names a bundle manifest lists (nothing outside its folder); [] if unreadable."""
    try:
        with open(path) as fh:
            files = json.load(fh).get("files", {})
        names = [entry["path"] for entry in files.values()]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return []
    return [n for n in names if isinstance(n, str) and n == os.path.basename(n) and n not in ("", ".", "..")]


def save_atomic_bytes(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def file_entry(out: str, name: str) -> dict:
    path = os.path.join(out, name)
    return {"path": name, "sha256": sha256_file(path), "bytes": os.path.getsize(path)}


def start_replacing(out: str, log) -> list[str]:
    """Creates ``out`` and removes a manifest already there (a half-replaced bundle must not look
    complete); returns the files the old manifest listed (see remove_replaced)."""
    os.makedirs(out, exist_ok=True)
    manifest_path = os.path.join(out, "manifest.json")
    previous_files = []
    if os.path.exists(manifest_path):
        previous_files = files_of_manifest(manifest_path)
        os.remove(manifest_path)
        log(f"replacing the bundle in {out}")
    return previous_files


def file_entries(out: str, tracker_pieces=()) -> dict:
    """The manifest's ``files``, in its order: the detector's pieces, tokenizer.json, then the
    tracker's pieces if the bundle has them."""
    files = {name: file_entry(out, f"{name}.pt") for name in DETECTOR_FILES}
    files["tokenizer"] = file_entry(out, "tokenizer.json")
    files.update((name, file_entry(out, f"{name}.pt")) for name in tracker_pieces)
    return files


def write_manifest(out: str, manifest: dict, previous_files: list[str], log) -> None:
    """Writes manifest.json, then removes the pieces of the bundle it replaced that it no longer has
    (an older format's vision_encoder.pt, say: 1.8 GB at full size). Only files the old manifest
    listed."""
    save_atomic_bytes(os.path.join(out, "manifest.json"), (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    kept = {entry["path"] for entry in manifest["files"].values()}
    for rel in previous_files:
        if rel not in kept and os.path.isfile(os.path.join(out, rel)):
            os.remove(os.path.join(out, rel))
            log(f"removed {rel}, a piece of the replaced bundle this one does not use")


def provenance(checkpoint: str, folder: str, raw_config: dict) -> dict:
    """The manifest's ``source``, ``versions`` and ``created_at``."""
    import torch
    import transformers

    return {
        "source": {
            "checkpoint": checkpoint,
            "model_type": "sam3",
            "checkpoint_model_type": raw_config["model_type"],
            "config_sha256": sha256_file(os.path.join(folder, "config.json")),
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "exporter": EXPORTER_VERSION,
        },
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
