"""Randomly initialised SAM 3 checkpoints in Hugging Face format, with a real CLIP tokenizer.

Presets (timings measured on the 2-core CPU of the build machine, torch 2.13.0+cpu, float32):

* ``tiny`` (default 224 px, any multiple of 14): ViT 32 wide, 2 layers; text 32 wide, 2 layers;
  DETR 32 wide; 20 queries. ~1.9M parameters (1.6M of them the 49408-token text embedding).
  One eager forward: ~0.03 s at 224 px, ~0.02 s at 112 px.
* ``bench`` (default 1008 px, the real resolution and mask size 288): ViT 256 wide, 4 layers
  (window 24, layer 3 global); text 256 wide, 4 layers; FPN/geometry/DETR/mask decoder 128 wide
  (DETR encoder 2, decoder 2 layers); 200 queries. ~25M parameters. One eager forward at 1008 px,
  2 threads, machine lightly loaded: ~2.2 s (2.1-2.4 s; vision encoder ~1.0 s of which FPN neck
  0.3 s, text ~0.01 s, head ~1.1 s of which mask decoder 0.65 s). With another 2-thread process
  busy on the same 2 cores it measured 6-7.5 s (OpenMP threads spin-waiting), 3.4 s with
  OMP_NUM_THREADS=1. A 256-wide FPN/head was tried first: its 3x3 convolutions at 288x288 alone
  took several seconds, so the head stays 128 wide.

The weights are random (``torch.manual_seed(seed)`` then the model's own initialisation): the pipeline
is real, the segmentations are not. Scores cluster around 0.25 (sigmoid(~0) * sigmoid(~0)) with tiny
spreads; tests pick thresholds accordingly.
"""
from __future__ import annotations

import json
import os

from .compat import install_roi_align_shim
from .tokenizer import CLIP_VOCAB_SIZE, TEXT_MAX_LENGTH, build_clip_tokenizer

PATCH_SIZE = 14
PRESETS = ("tiny", "bench", "full")
DEFAULT_IMAGE_SIZE = {"tiny": 224, "bench": 1008, "full": 1008}


def sam3_config_dict(preset: str = "tiny", image_size: int | None = None) -> dict:
    """Keyword arguments for ``Sam3Config`` for a preset at a resolution (a multiple of 14)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (choose from {', '.join(PRESETS)})")
    size = DEFAULT_IMAGE_SIZE[preset] if image_size is None else int(image_size)
    if size <= 0 or size % PATCH_SIZE:
        raise ValueError(f"--image-size must be a positive multiple of {PATCH_SIZE}, got {size}")
    g = size // PATCH_SIZE
    if preset == "full":
        # facebook/sam3's architecture (Sam3Config's defaults, ~840M parameters) with random weights:
        # for checking that the exporter and the server handle the real sizes.
        if size != 1008:
            raise ValueError("the full preset is 1008 px, like facebook/sam3")
        return dict(
            text_config=dict(
                model_type="clip_text_model", vocab_size=CLIP_VOCAB_SIZE, hidden_size=1024, intermediate_size=4096,
                projection_dim=512, num_hidden_layers=24, num_attention_heads=16,
                max_position_embeddings=TEXT_MAX_LENGTH, hidden_act="gelu", bos_token_id=49406, eos_token_id=49407,
                pad_token_id=49407,
            )
        )
    if preset == "tiny":
        # FPN/head width 128: the tracker's object pointers are split into 64-wide memory tokens, and
        # transformers only flattens them when its hidden size (= the FPN width) is above 64.
        vit = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, window_size=8, global_attn_indexes=[1])
        text = dict(hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=2, num_attention_heads=2)
        d, heads, ffn = 128, 2, 256
        geo_layers, enc_layers, dec_layers, queries = 1, 1, 2, 20
    else:
        vit = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4, window_size=24, global_attn_indexes=[3])
        text = dict(hidden_size=256, intermediate_size=1024, projection_dim=256, num_hidden_layers=4, num_attention_heads=4)
        d, heads, ffn = 128, 4, 512
        geo_layers, enc_layers, dec_layers, queries = 2, 2, 2, 200
    return dict(
        vision_config=dict(
            backbone_config=dict(image_size=size, patch_size=PATCH_SIZE, pretrain_image_size=size, **vit),
            fpn_hidden_size=d,
            backbone_feature_sizes=[[4 * g, 4 * g], [2 * g, 2 * g], [g, g]],
        ),
        text_config=dict(
            model_type="clip_text_model",
            vocab_size=CLIP_VOCAB_SIZE,
            max_position_embeddings=TEXT_MAX_LENGTH,
            hidden_act="gelu",
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
            **text,
        ),
        geometry_encoder_config=dict(hidden_size=d, num_layers=geo_layers, num_attention_heads=heads, intermediate_size=ffn),
        detr_encoder_config=dict(hidden_size=d, num_layers=enc_layers, num_attention_heads=heads, intermediate_size=ffn),
        detr_decoder_config=dict(hidden_size=d, num_layers=dec_layers, num_attention_heads=heads, intermediate_size=ffn, num_queries=queries),
        mask_decoder_config=dict(hidden_size=d, num_attention_heads=heads),
    )


def tracker_config_dict(preset: str, detector: dict, image_size: int) -> dict | None:
    """Keyword arguments for the tracker half of a ``Sam3VideoConfig`` (``Sam3TrackerVideoConfig``):
    the SAM 2-style prompt encoder, mask decoder, memory encoder and memory attention. The tracker
    shares the detector's ViT (its own FPN neck is ``tracker_neck``), so its vision config is the
    detector's. None for ``full``: Sam3VideoConfig's defaults are facebook/sam3's."""
    if preset == "full":
        return None
    d = detector["vision_config"]["fpn_hidden_size"]
    if preset == "tiny":
        heads, mlp, mem_layers, mem_ffn, fuser = 2, 128, 2, 128, 128
    else:
        heads, mlp, mem_layers, mem_ffn, fuser = 4, 512, 2, 512, 512
    return dict(
        vision_config=dict(detector["vision_config"]),
        prompt_encoder_config=dict(hidden_size=d, image_size=image_size, patch_size=PATCH_SIZE, mask_input_channels=16),
        mask_decoder_config=dict(hidden_size=d, num_attention_heads=heads, mlp_dim=mlp, iou_head_hidden_dim=d),
        image_size=image_size,
        memory_attention_hidden_size=d,
        memory_attention_num_layers=mem_layers,
        memory_attention_feed_forward_hidden_size=mem_ffn,
        memory_encoder_hidden_size=d,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=d,
        memory_fuser_embed_dim=d,
        memory_fuser_intermediate_dim=fuser,
    )


def processor_files(image_size: int, mask_size: int) -> dict[str, dict]:
    """preprocessor_config.json and processor_config.json in the layout of facebook/sam3."""
    image_processor = {
        "crop_size": None,
        "data_format": "channels_first",
        "default_to_square": True,
        "device": None,
        "disable_grouping": None,
        "do_center_crop": None,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_pad": None,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "Sam3ImageProcessor",
        "image_std": [0.5, 0.5, 0.5],
        "input_data_format": None,
        "mask_pad_size": None,
        "mask_size": {"height": mask_size, "width": mask_size},
        "pad_size": None,
        "resample": 2,
        "rescale_factor": 1 / 255,
        "return_tensors": None,
        "size": {"height": image_size, "width": image_size},
    }
    return {
        "preprocessor_config.json": {**image_processor, "processor_class": "Sam3Processor"},
        "processor_config.json": {
            "image_processor": image_processor,
            "point_pad_value": -10,
            "processor_class": "Sam3Processor",
            "target_size": image_size,
        },
    }


def build_model(preset: str = "tiny", image_size: int | None = None, seed: int = 0, video_config: dict | None = None):
    """A ``Sam3VideoModel`` (detector + tracker, facebook/sam3's layout) with random weights. The
    parameters transformers initialises to zero in the tracker (no-memory/no-object
    embeddings, temporal encodings, biases, layer scales) are drawn at random too, so that every
    path of the tracker changes the output and parity tests can see it. ``video_config``: values of
    Sam3VideoConfig's own (concept-tracking) fields, concept_config.parse_overrides' output; they
    change config.json only, never the weights."""
    import torch
    from transformers import Sam3VideoConfig, Sam3VideoModel
    from transformers.utils import logging as hf_logging

    install_roi_align_shim()
    hf_logging.disable_progress_bar()
    detector = sam3_config_dict(preset, image_size)
    size = DEFAULT_IMAGE_SIZE[preset] if image_size is None else int(image_size)
    config = Sam3VideoConfig(detector_config=detector, tracker_config=tracker_config_dict(preset, detector, size), **(video_config or {}))
    torch.manual_seed(seed)
    model = Sam3VideoModel(config).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(("tracker_model.", "tracker_neck.")) and bool((param == 0).all()):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    return model


def make_checkpoint(out: str, seed: int = 0, image_size: int | None = None, preset: str = "tiny", log=None, video_config: dict | None = None) -> str:
    """Writes a Hugging Face SAM 3 folder: config.json, model.safetensors, tokenizer files, processor
    configs. Returns the folder. ``video_config``: see build_model."""
    log = log or (lambda msg: None)
    model = build_model(preset, image_size, seed, video_config)
    vision = model.config.detector_config.vision_config
    size = vision.backbone_config.image_size
    mask_size = vision.backbone_feature_sizes[0][0]
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters, {size}x{size}, masks {mask_size}x{mask_size}")
    tokenizer = build_clip_tokenizer()
    tokenizer._set_processor_class("Sam3Processor")  # what Sam3Processor.save_pretrained records
    tokenizer.save_pretrained(out)
    for name, content in processor_files(size, mask_size).items():
        with open(os.path.join(out, name), "w", encoding="utf-8") as fh:
            json.dump(content, fh, indent=2, sort_keys=True)
            fh.write("\n")
    return out


def sanity_check(folder: str) -> float:
    """Reloads a checkpoint folder as transformers would and runs one forward (text + a box).
    Returns the forward's wall time in seconds; raises on any problem."""
    import time

    import torch
    from transformers import AutoTokenizer, Sam3Model
    from transformers.utils import logging as hf_logging

    install_roi_align_shim()
    hf_logging.disable_progress_bar()
    model = Sam3Model.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    size = model.config.vision_config.backbone_config.image_size
    text = tokenizer(["a cat"], padding="max_length", max_length=TEXT_MAX_LENGTH, truncation=True, return_tensors="pt")
    with torch.no_grad():
        start = time.time()
        out = model(
            pixel_values=torch.zeros(1, 3, size, size),
            input_ids=text["input_ids"],
            attention_mask=text["attention_mask"],
            input_boxes=torch.tensor([[[0.5, 0.5, 0.2, 0.3]]]),
            input_boxes_labels=torch.tensor([[1]]),
        )
        took = time.time() - start
    queries = model.config.detr_decoder_config.num_queries
    if tuple(out.pred_logits.shape) != (1, queries) or not torch.isfinite(out.pred_masks).all():
        raise RuntimeError(f"unexpected forward output from the reloaded checkpoint {folder}")
    return took
