"""Finding, validating and loading a SAM 3 checkpoint (a local Hugging Face folder or a hub id), and
reading its preprocessing settings. Shared by the exporter and the reference tool."""
from __future__ import annotations

import hashlib
import json
import os
import re

from .compat import install_roi_align_shim

# model_type values Sam3Model.from_pretrained can load: its own, and a video checkpoint (facebook/sam3
# ships one config for detector + tracker; Sam3Model takes its detector_config and ignores the tracker).
SAM3_MODEL_TYPES = ("sam3", "sam3_video")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


class CheckpointError(Exception):
    """A checkpoint we refuse, with a one-line reason meant for the user."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def resolve_checkpoint(checkpoint: str, log=None) -> str:
    """A local folder for ``checkpoint``: itself when it exists on disk, else a hub id downloaded with
    huggingface_hub (which needs network access, and HF_TOKEN for gated repos such as facebook/sam3)."""
    log = log or (lambda msg: None)
    expanded = os.path.expanduser(checkpoint)
    if os.path.exists(expanded):
        if not os.path.isdir(expanded):
            raise CheckpointError(f"checkpoint '{checkpoint}' is a file, not a Hugging Face model folder")
        return expanded
    if checkpoint.startswith((".", "/", "~")) or not HUB_ID.match(checkpoint):
        raise CheckpointError(f"checkpoint folder not found: {checkpoint}")
    log(f"'{checkpoint}' is not a local folder: downloading it from the Hugging Face Hub")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(
            repo_id=checkpoint,
            allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"],
        )
    except Exception as err:  # offline, gated, not found: huggingface_hub raises its own types
        raise CheckpointError(
            f"cannot fetch '{checkpoint}' from the Hugging Face Hub ({type(err).__name__}: {_first_line(err)}); "
            "it is neither a local folder nor reachable: check network access (and HF_TOKEN for gated repos "
            "such as facebook/sam3) or pass a local folder"
        ) from None


def read_config(folder: str) -> dict:
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise CheckpointError(f"no config.json in {folder}: not a Hugging Face model folder")
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"config.json in {folder} is not valid JSON ({_first_line(err)})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"config.json in {folder} is not a JSON object")
    model_type = config.get("model_type")
    if model_type not in SAM3_MODEL_TYPES:
        raise CheckpointError(
            f"{folder} holds a '{model_type}' model, not SAM 3 (config.json model_type must be one of {', '.join(SAM3_MODEL_TYPES)})"
        )
    return config


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_weight_files(folder: str) -> list[str]:
    """The weight files of a folder, each opened far enough to know it is not truncated or corrupt."""
    present = [name for name in WEIGHT_FILES if os.path.isfile(os.path.join(folder, name))]
    if not present:
        raise CheckpointError(f"no weights in {folder} (expected {' or '.join(WEIGHT_FILES[:2])})")
    name = present[0]
    if name.endswith(".index.json"):
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                shards = sorted(set(json.load(fh)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{name} in {folder} is not a valid weight index ({_first_line(err)})") from None
        files = shards
    else:
        files = [name]
    for shard in files:
        path = os.path.join(folder, shard)
        if not os.path.isfile(path):
            raise CheckpointError(f"weight file {shard} listed in {name} is missing from {folder}")
        if shard.endswith(".safetensors"):
            _check_safetensors(path)
        elif os.path.getsize(path) == 0:
            raise CheckpointError(f"weight file {shard} in {folder} is empty")
    return files


def _check_safetensors(path: str) -> None:
    """Header parses and every tensor's byte range lies inside the file (catches truncation)."""
    size = os.path.getsize(path)
    name = os.path.basename(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ValueError("file shorter than the 8-byte header length")
            n = int.from_bytes(head, "little")
            if n <= 0 or 8 + n > size:
                raise ValueError(f"header length {n} does not fit in {size} bytes")
            header = json.loads(fh.read(n))
        end = 0
        for key, info in header.items():
            if key == "__metadata__":
                continue
            begin, stop = info["data_offsets"]
            end = max(end, stop)
        if 8 + n + end > size:
            raise ValueError(f"tensor data needs {8 + n + end} bytes but the file has {size} (truncated?)")
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"weight file {name} is corrupt: {_first_line(err)}") from None


def check_tokenizer_files(folder: str) -> None:
    if os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return
    if all(os.path.isfile(os.path.join(folder, f)) for f in ("vocab.json", "merges.txt")):
        return
    raise CheckpointError(f"no tokenizer in {folder} (expected tokenizer.json, or vocab.json + merges.txt)")


def load_tokenizer(folder: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as err:
        raise CheckpointError(f"cannot load the tokenizer in {folder} ({type(err).__name__}: {_first_line(err)})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise CheckpointError(f"the tokenizer in {folder} is not a fast (tokenizers) tokenizer; a tokenizer.json is needed")
    if tokenizer.pad_token_id is None:
        raise CheckpointError(f"the tokenizer in {folder} has no pad token")
    return tokenizer


def load_model(folder: str, dtype=None, device="cpu"):
    """Sam3Model.from_pretrained, refusing weights that do not cover the model (missing keys, wrong
    shapes). Returns the model in eval mode on ``device`` in ``dtype``."""
    import torch
    from transformers import Sam3Model
    from transformers.utils import logging as hf_logging

    install_roi_align_shim()
    hf_logging.disable_progress_bar()
    dtype = dtype or torch.float32
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # we report loading problems ourselves
    try:
        # ignore_mismatched_sizes: report wrong shapes ourselves (below) instead of transformers' report.
        model, info = Sam3Model.from_pretrained(
            folder, dtype=dtype, output_loading_info=True, ignore_mismatched_sizes=True
        )
    except Exception as err:
        raise CheckpointError(
            f"cannot load the weights in {folder} ({type(err).__name__}: {_first_line(err)})"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(info.get("mismatched_keys") or [])
    if missing:
        raise CheckpointError(
            f"the weights in {folder} do not match its config: {len(missing)} missing tensors (e.g. {missing[0]})"
        )
    if mismatched:
        first = mismatched[0]
        if isinstance(first, (tuple, list)) and len(first) == 3:
            first = f"{first[0]}: checkpoint {tuple(first[1])}, config {tuple(first[2])}"
        raise CheckpointError(f"the weights in {folder} do not match its config: {len(mismatched)} tensors of the wrong shape (e.g. {first})")
    errors = info.get("error_msgs") or []
    if errors:
        raise CheckpointError(f"the weights in {folder} did not load: {_first_line(Exception(errors[0]))}")
    model = model.to(dtype=dtype).to(device).eval()
    model.requires_grad_(False)
    return model, info


def model_image_size(raw_config: dict) -> int:
    """The resolution a SAM 3 config.json is built for (Sam3ViTConfig's default 1008 when unset)."""
    cfg = (raw_config.get("detector_config") or raw_config) if raw_config.get("model_type") == "sam3_video" else raw_config
    backbone = ((cfg.get("vision_config") or {}).get("backbone_config")) or {}
    size = backbone.get("image_size", 1008)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def preprocessing(folder: str, image_size: int) -> dict:
    """Resolution and normalisation of a checkpoint, as transformers' Sam3ImageProcessor applies them.

    Returns {"resolution", "mean", "std"} where mean/std apply to the resized uint8 values converted to
    float32: (x - mean) / std. With rescale and normalise both on, transformers' TorchvisionBackend
    fuses them (``_fuse_mean_std_and_rescale_factor``): mean = tensor(image_mean) * (1 / rescale_factor),
    std likewise, in float32; that is what we compute (127.5 / 127.5 for facebook/sam3).
    """
    import torch

    proc = None
    for name in ("preprocessor_config.json", "processor_config.json"):
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{name} in {folder} is not valid JSON ({_first_line(err)})") from None
        if name == "processor_config.json":
            data = data.get("image_processor") if isinstance(data, dict) else None
        if isinstance(data, dict):
            proc = data
            break
    proc = proc or {}
    model_size = int(image_size)
    size = proc.get("size") or {"height": model_size, "width": model_size}
    height, width = size.get("height"), size.get("width")
    if height is None or width is None or height != width:
        raise CheckpointError(f"the image processor of {folder} does not resize to a square (size {size})")
    if int(height) != model_size:
        raise CheckpointError(
            f"the image processor of {folder} resizes to {height}px but the model is built for {model_size}px"
        )
    image_mean = proc.get("image_mean", [0.5, 0.5, 0.5])
    image_std = proc.get("image_std", [0.5, 0.5, 0.5])
    if isinstance(image_mean, (int, float)):
        image_mean = [image_mean] * 3
    if isinstance(image_std, (int, float)):
        image_std = [image_std] * 3
    resample = proc.get("resample", 2)
    if resample not in (2, "bilinear", "BILINEAR"):
        raise CheckpointError(f"the image processor of {folder} uses resample={resample}; only bilinear (2) is supported")
    rescale_factor = proc.get("rescale_factor", 1 / 255)
    do_rescale = proc.get("do_rescale", True)
    do_normalize = proc.get("do_normalize", True)
    if do_rescale and do_normalize:
        mean = torch.tensor(image_mean) * (1.0 / rescale_factor)
        std = torch.tensor(image_std) * (1.0 / rescale_factor)
    elif do_normalize:
        mean, std = torch.tensor(image_mean), torch.tensor(image_std)
    elif do_rescale:
        mean, std = torch.zeros(3), torch.full((3,), 1.0 / rescale_factor)
    else:
        mean, std = torch.zeros(3), torch.ones(3)
    return {
        "resolution": int(height),
        "mean": [float(v) for v in mean.to(torch.float32).tolist()],
        "std": [float(v) for v in std.to(torch.float32).tolist()],
    }
