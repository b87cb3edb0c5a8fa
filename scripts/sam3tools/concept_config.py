"""The concept-tracking settings of a ``Sam3VideoConfig`` (text prompts tracked through a video:
detector every frame, mask NMS, association with tracked masklets, new objects, hotstart, occlusion
suppression, reconditioning, hole filling), in one place for the three tools that handle them:

* make_tiny_checkpoint.py ``--video-config KEY=VALUE`` (parse_overrides: typed by the field's default);
* the exporter's manifest, ``video.concept`` (concept_settings: read from the checkpoint's config);
* make_concept_reference.py's per-case overrides (check_overrides).

Nothing here imports torch or transformers at import time.
"""
from __future__ import annotations

# Sam3VideoConfig's concept-tracking fields, in its order. Sam3VideoModel copies each into an
# attribute of the same name in __init__ (transformers 5.17).
CONCEPT_FIELDS = (
    "score_threshold_detection",
    "det_nms_thresh",
    "assoc_iou_thresh",
    "trk_assoc_iou_thresh",
    "new_det_thresh",
    "recondition_on_trk_masks",
    "hotstart_delay",
    "hotstart_unmatch_thresh",
    "hotstart_dup_thresh",
    "suppress_unmatched_only_within_hotstart",
    "init_trk_keep_alive",
    "max_trk_keep_alive",
    "min_trk_keep_alive",
    "suppress_overlapping_based_on_recent_occlusion_threshold",
    "decrease_trk_keep_alive_for_empty_masklets",
    "fill_hole_area",
    "max_num_objects",
    "recondition_every_nth_frame",
    "high_conf_thresh",
    "high_iou_thresh",
    "low_res_mask_size",
)

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def field_defaults() -> dict:
    """CONCEPT_FIELDS -> Sam3VideoConfig's default (its type is the field's type)."""
    from transformers import Sam3VideoConfig

    return {name: getattr(Sam3VideoConfig, name) for name in CONCEPT_FIELDS}


def coerce(name: str, value, default):
    """``value`` (a string from the command line, or a JSON value) as the type of ``default``;
    ValueError with the field's name if it does not fit."""
    kind = type(default)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{name} is a boolean (true/false), got {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"{name} is {'an integer' if kind is int else 'a number'}, got {value!r}")
    try:
        if kind is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(str(value).strip(), 10) if isinstance(value, str) else int(value)
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} is {'an integer' if kind is int else 'a number'}, got {value!r}") from None


def check_overrides(overrides: dict) -> dict:
    """{field: value} with known fields only, each coerced to its field's type (ValueError)."""
    defaults = field_defaults()
    out = {}
    for name, value in overrides.items():
        if name not in defaults:
            raise ValueError(f"unknown concept-tracking setting {name!r} (Sam3VideoConfig fields: {', '.join(CONCEPT_FIELDS)})")
        out[name] = coerce(name, value, defaults[name])
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """``["KEY=VALUE", ...]`` (repeatable --video-config flags) -> {field: typed value}; a later
    KEY wins. ValueError on a malformed item, an unknown key or a value of the wrong type."""
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--video-config expects KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value
    return check_overrides(pairs)


def check_hotstart(settings: dict) -> None:
    """Sam3VideoConfig's own rule (it refuses the config otherwise): with hotstart_delay > 0, both
    hotstart thresholds must be <= hotstart_delay. ``settings`` holds all three."""
    delay = settings["hotstart_delay"]
    if delay > 0:
        for name in ("hotstart_unmatch_thresh", "hotstart_dup_thresh"):
            if settings[name] > delay:
                raise ValueError(f"{name} ({settings[name]}) must be <= hotstart_delay ({delay})")


def concept_settings(folder: str) -> dict:
    """The manifest's ``video.concept``: every CONCEPT_FIELDS value of the checkpoint's
    Sam3VideoConfig (config.json, Sam3VideoConfig's defaults for fields it lacks), typed as the field."""
    from transformers import Sam3VideoConfig

    config = Sam3VideoConfig.from_pretrained(folder)
    defaults = field_defaults()
    return {name: coerce(name, getattr(config, name), defaults[name]) for name in CONCEPT_FIELDS}
