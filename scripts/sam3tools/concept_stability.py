"""Whether a concept-tracking reference case is stable enough for an exact parity test: the same case
run in float32, in float64 and with small noise on the input pixels must take the same decisions
(objects created, removed, suppressed, reconditioned, NMS drops, per-frame ids and prompt groups). On
random tiny weights scores sit within ~1e-5 of each other, so a case whose decisions flip under
float64 or 1e-3 noise would make the native port's parity test flaky.

In bfloat16 (``dtype``) the case runs in bfloat16 against itself with the noise: 1e-3 on pixels in
[-1, 1] moves about a third of them by one bfloat16 step (37% of the demo's), a perturbation of
the size of a different rounding order inside the network, which is how the native port's bfloat16
pieces differ from eager. A case stable under it can be compared decision for decision.
"""
from __future__ import annotations

import numpy as np
import torch

from .concept_reference import ConceptRunner


class NoisyRunner(ConceptRunner):
    """A ConceptRunner whose preprocessed frames get ``eps * N(0, 1)`` noise (seeded, per folder)."""

    def __init__(self, checkpoint: str, eps: float, seed: int, dtype: torch.dtype = torch.float32):
        super().__init__(checkpoint, dtype)
        self.eps, self.seed = eps, seed

    def video(self, folder: str):
        pixels, height, width = super().video(folder)
        gen = torch.Generator().manual_seed(self.seed)
        return pixels + self.eps * torch.randn(pixels.shape, generator=gen), height, width


def output_frames(result: dict) -> list[dict]:
    """A case's per-frame records in output order (a case with ops: all its ops' outputs)."""
    if "ops" in result:
        return [frame for op in result["ops"] for frame in op["outputs"]]
    return result["frames"]


def decisions(result: dict) -> list[tuple]:
    """What a parity test compares exactly: per output frame its ids, removed and suppressed ids and
    prompt groups; per processed frame what each mechanism decided."""
    out = [("output", f["frame_index"], tuple(f["object_ids"]), tuple(f["removed_obj_ids"]), tuple(f["suppressed_obj_ids"]),
            tuple(sorted((k, tuple(v)) for k, v in f["prompt_to_obj_ids"].items()))) for f in output_frames(result)]
    for p in result["processed"]:
        out.append(("processed", p["frame_index"], tuple(sorted(p["detections_per_prompt"].items())), p["nms_suppressed"],
                    tuple(p.get("new_obj_ids", ())), tuple(p.get("hotstart_removed_obj_ids", ())),
                    tuple(p.get("reconditioned_obj_ids", ())), tuple(p["occlusion_suppressed_obj_ids"]),
                    tuple(sorted(p.get("det_to_matched_trk_obj_ids", {}).items()))))
    return out


def first_difference(a: list[tuple], b: list[tuple]) -> str | None:
    """None when equal; otherwise the first differing entry of each (or the length difference)."""
    for x, y in zip(a, b):
        if x != y:
            return f"{x} != {y}"
    return None if len(a) == len(b) else f"{len(a)} != {len(b)} entries"


def decode_rle(rle: dict) -> np.ndarray:
    """One of the output's COCO RLE masks as a uint8 (H, W) array."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})


def mask_differences(a: dict, b: dict) -> tuple[int, float]:
    """(most mask pixels that differ in one object's mask, largest score difference) over the output
    frames whose ids agree."""
    worst, score = 0, 0.0
    for fa, fb in zip(output_frames(a), output_frames(b)):
        if fa["object_ids"] != fb["object_ids"]:
            continue
        for ra, rb in zip(fa["masks"], fb["masks"]):
            worst = max(worst, int((decode_rle(ra) != decode_rle(rb)).sum()))
        score = max([score, *(abs(x - y) for x, y in zip(fa["scores"], fb["scores"]))])
    return worst, score


def check_stability(checkpoint: str, cases: list[dict], base: str, eps: float = 1e-3, seeds: tuple[int, ...] = (5,), log=None,
                    dtype: torch.dtype = torch.float32) -> dict:
    """Per case: {variant: {"same": bool, "difference": first difference or None, "mask_pixels",
    "score"}} for float64 (float32 only) and each noise seed against the case in ``dtype``, and
    "stable": all the same."""
    log = log or (lambda msg: None)
    variants = {"float64": ConceptRunner(checkpoint, torch.float64)} if dtype == torch.float32 else {}
    variants.update({f"noise{eps:g}_seed{s}": NoisyRunner(checkpoint, eps, s, dtype) for s in seeds})
    reference = ConceptRunner(checkpoint, dtype)
    report = {}
    for case in cases:
        want = reference.run(case, base)
        entry = {}
        for name, runner in variants.items():
            got = runner.run(case, base)
            diff = first_difference(decisions(want), decisions(got))
            pixels, score = mask_differences(want, got)
            entry[name] = {"same": diff is None, "difference": diff, "mask_pixels": pixels, "score": score}
        entry["stable"] = all(v["same"] for v in entry.values())
        log(f"{case['name']}: {'stable' if entry['stable'] else 'NOT STABLE'} " + ", ".join(
            f"{k}: {'same' if v['same'] else 'differs'} (mask px {v['mask_pixels']}, score {v['score']:.1e})" for k, v in entry.items() if k != "stable"))
        report[case["name"]] = entry
    return report
