"""Export a SAM 3 checkpoint to a model bundle: TorchScript pieces, tokenizer.json, manifest.json.

export_bundle runs the stages in order: check the options, load and check the checkpoint, the
detector's pieces (detector_export.py), the video tracker's for sam3_video checkpoints
(tracker_export.py), tokenizer.json (padding and truncation to 32 tokens built in), manifest.json
last (manifest.py). The pieces are small modules over transformers' submodules (pieces_vision.py,
pieces_text.py, pieces_head.py, pieces_pixel.py, tracker_pieces.py, memory_attention.py; their
docstrings give each piece's exact signature, which the C++ addon depends on: positional tensors in,
tuples out); trace.py traces them on the target device and dtype and checks each against eager on
fresh inputs of another batch size, prompt length or box count before it is saved.

Adding a piece: write its module in the pieces file of its side (borrow() only the submodules its
path runs; positional tensors in, a tuple out; cast inputs that may arrive in another dtype inside),
then a stage function in detector_export.py or tracker_export.py that traces it (tracer.trace on
inputs from tracer.randn), checks it against the eager transformers path on other shapes
(tracer.check) and saves it (tracer.save(traced, NAME)); list NAME in manifest.DETECTOR_FILES and
manifest.SIGNATURES (or tracker_export.TRACKER_FILES) and raise BUNDLE_FORMAT_VERSION if the addon
must tell bundles apart. Call the new stage after the existing ones: the stages share one random
generator, so a stage put in between changes the later stages' trace inputs.
"""
from __future__ import annotations

import os
import time

import torch

from .checkpoint_io import (
    CheckpointError,
    check_tokenizer_files,
    check_weight_files,
    load_model,
    load_tokenizer,
    model_image_size,
    preprocessing,
    read_config,
    resolve_checkpoint,
)
from .detector_export import DetectorFacts, export_detector
from .errors import UsageError
from .manifest import BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION, SIGNATURES, file_entries, provenance, save_atomic_bytes, start_replacing, write_manifest
from .tokenizer import TEXT_MAX_LENGTH, VISUAL_PROMPT, bundle_tokenizer_json, check_bundle_tokenizer
from .trace import Tracer
from .tracker_export import TRACKER_FILES, backbone_fingerprint, export_tracker, has_tracker

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def export_bundle(checkpoint: str, out: str, device: str = "cpu", dtype: str = "float32", log=None) -> dict:
    """Exports ``checkpoint`` (folder or hub id) to the bundle folder ``out``; returns the manifest."""
    log = log or (lambda msg: None)
    start = time.time()
    torch_dtype, dev = check_options(out, device, dtype)
    folder, raw_config, prep, tokenizer, model = load_checkpoint(checkpoint, out, dtype, dev, log, start)
    previous_files = start_replacing(out, log)
    config = model.config
    resolution = prep["resolution"]
    with torch.no_grad():
        detector = export_detector(Tracer(out, dev, torch_dtype, log, seed=0), model, tokenizer, resolution)
    video = None
    if has_tracker(raw_config):
        fingerprint = backbone_fingerprint(model.vision_encoder.backbone)
        del model  # the tracker loads its own copy of the ViT; free the detector first
        log("exporting the video tracker")
        video = export_tracker(folder, out, dev, torch_dtype, resolution, log, fingerprint)
    else:
        log("no video tracker in this checkpoint (model_type sam3): the bundle serves images only")
    write_tokenizer(out, tokenizer)
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        **provenance(checkpoint, folder, raw_config),
        "device": str(dev),
        "dtype": dtype,
        **detector_section(config, detector, resolution),
        "text": {"max_length": TEXT_MAX_LENGTH, "pad_token_id": int(tokenizer.pad_token_id), "visual_prompt": VISUAL_PROMPT},
        "normalization": {"mean": prep["mean"], "std": prep["std"]},
        "fpn_shapes": detector.fpn_shapes,
        "files": file_entries(out, TRACKER_FILES if video is not None else ()),
        "signatures": dict(SIGNATURES),
    }
    if video is not None:
        manifest["video"] = video
    write_manifest(out, manifest, previous_files, log)
    log(f"bundle written to {out} in {time.time() - start:.1f} s")
    return manifest


def check_options(out: str, device: str, dtype: str) -> tuple[torch.dtype, torch.device]:
    """--dtype, --device and --out, before anything is loaded (UsageError)."""
    if dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    torch_dtype = DTYPES[dtype]
    dev = parse_device(device)
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} exists and is not a folder")
    return torch_dtype, dev


def load_checkpoint(checkpoint: str, out: str, dtype: str, dev: torch.device, log, start: float):
    """Resolves, checks and loads the checkpoint (CheckpointError; UsageError if ``out`` is its
    folder). Returns (folder, raw config, preprocessing, tokenizer, Sam3Model); ``start``: when the
    export started (the load's log line counts from it)."""
    folder = resolve_checkpoint(checkpoint, log)
    if os.path.realpath(out) == os.path.realpath(folder):
        raise UsageError("--out must not be the checkpoint folder (the bundle's tokenizer.json would replace the checkpoint's)")
    raw_config = read_config(folder)
    prep = preprocessing(folder, model_image_size(raw_config))
    check_weight_files(folder)
    check_tokenizer_files(folder)
    tokenizer = load_tokenizer(folder)
    log(f"loading {checkpoint} ({dtype}, {dev})")
    model, info = load_model(folder, DTYPES[dtype], dev)
    config = model.config
    if model_image_size_of(config) != prep["resolution"]:
        raise CheckpointError(f"the model in {folder} is built for {model_image_size_of(config)}px, its image processor resizes to {prep['resolution']}px")
    unexpected = info.get("unexpected_keys") or []
    log(
        f"loaded {sum(p.numel() for p in model.parameters()):,} parameters in {time.time() - start:.1f} s"
        + (f" ({len(unexpected)} checkpoint tensors not used by Sam3Model, e.g. the video tracker)" if unexpected else "")
    )
    if config.text_config.max_position_embeddings < TEXT_MAX_LENGTH:
        raise CheckpointError(
            f"the text encoder takes {config.text_config.max_position_embeddings} tokens, fewer than the {TEXT_MAX_LENGTH} SAM 3 uses"
        )
    return folder, raw_config, prep, tokenizer, model


def detector_section(config, detector: DetectorFacts, resolution: int) -> dict:
    """The manifest's shapes of the detector, in its order."""
    return {
        "resolution": resolution,
        "patch_size": int(config.vision_config.backbone_config.patch_size),
        "vit": {"grid": detector.grid, "hidden_size": detector.backbone_width},
        "mask_size": detector.mask_size,
        "num_queries": int(config.detr_decoder_config.num_queries),
        "hidden_size": detector.hidden_size,
    }


def write_tokenizer(out: str, tokenizer) -> None:
    """tokenizer.json with truncation + fixed padding built in, checked against the checkpoint's."""
    tokenizer_json = bundle_tokenizer_json(tokenizer, TEXT_MAX_LENGTH)
    check_bundle_tokenizer(tokenizer, tokenizer_json)
    save_atomic_bytes(os.path.join(out, "tokenizer.json"), tokenizer_json.encode("utf-8"))


def model_image_size_of(config) -> int:
    size = config.vision_config.backbone_config.image_size
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def parse_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device must be cpu or cuda[:N], got '{device}'") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise UsageError(f"--device must be cpu or cuda[:N], got '{device}'")
    if not torch.cuda.is_available():
        raise UsageError(f"--device {device}: this torch build ({torch.__version__}) has no usable CUDA device")
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) present")
    return torch.device("cuda", index)
