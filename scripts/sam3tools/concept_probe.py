"""Watches transformers' ``Sam3VideoModel`` run concept tracking, without changing what it computes:
per processed frame, what each mechanism did (detections per prompt, detections suppressed by mask
NMS, new objects, hotstart removals, reconditioning, occlusion suppression, pixels flipped by hole
filling and sprinkle removal), and optionally the intermediate tensors (--debug) so the native port
can be compared stage by stage.

It wraps, for the duration of a ``with Probe(model):`` block, two module functions of
``modeling_sam3_video`` (nms_masks, fill_holes_in_mask_scores: transformers calls them by their module
name) and a few of the model's methods (as instance attributes: the model calls them through self).
Every wrapper calls the original and returns its result untouched.
"""
from __future__ import annotations

import torch

WRAPPED_METHODS = (
    "_det_track_one_frame",
    "_merge_detections_from_prompts",
    "run_tracker_propagation",
    "run_tracker_update_planning_phase",
    "_get_objects_to_suppress_based_on_most_recently_occluded",
)


def _ids(values) -> list[int]:
    return sorted(int(v) for v in values)


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").clone()


class Probe:
    """``with Probe(model, debug=True) as probe:`` ... ``probe.frames`` (one record a processed frame,
    in processing order), ``probe.debug`` (one dict of tensors a processed frame, if debug)."""

    def __init__(self, model, debug: bool = False):
        self.model = model
        self.keep_tensors = debug
        self.frames: list[dict] = []
        self.debug: list[dict] = []
        self.margins = Margins()
        self._saved_functions = {}
        self._site = "new_detections"

    # ------------------------------------------------------------------ records

    def _frame(self) -> dict:
        if not self.frames:
            raise RuntimeError("Probe: a wrapped stage ran outside Sam3VideoModel._det_track_one_frame")
        return self.frames[-1]

    def _tensors(self) -> dict:
        return self.debug[-1]

    # ------------------------------------------------------------------ install / remove

    def __enter__(self) -> Probe:
        from transformers.models.sam3_video import modeling_sam3_video as msv

        self._msv = msv
        self._saved_functions = {"nms_masks": msv.nms_masks, "fill_holes_in_mask_scores": msv.fill_holes_in_mask_scores}
        msv.nms_masks = self._nms_masks
        msv.fill_holes_in_mask_scores = self._fill_holes
        for name in WRAPPED_METHODS:
            setattr(self.model, name, getattr(self, "_" + name.lstrip("_")))
        return self

    def __exit__(self, *exc) -> None:
        for name, fn in self._saved_functions.items():
            setattr(self._msv, name, fn)
        for name in WRAPPED_METHODS:
            self.model.__dict__.pop(name, None)

    def _original(self, name: str):
        return getattr(type(self.model), name).__get__(self.model)

    # ------------------------------------------------------------------ wrappers

    def _det_track_one_frame(self, inference_session, frame_idx, reverse, streaming=False):
        self.frames.append({
            "frame_index": int(frame_idx),
            "detections_per_prompt": {},
            "nms": [],
            "nms_suppressed": 0,
            "hole_fill": {"tracker": {"filled": 0, "removed": 0, "calls": 0}, "new_detections": {"filled": 0, "removed": 0, "calls": 0}},
            "occlusion_suppressed_obj_ids": [],
        })
        if self.keep_tensors:
            self.debug.append({"frame_index": int(frame_idx), "reverse": bool(reverse)})
        result = self._original("_det_track_one_frame")(inference_session, frame_idx, reverse, streaming)
        if self.keep_tensors:
            obj_id_to_mask, obj_id_to_score, metadata, _ = result
            tensors = self._tensors()
            tensors["obj_id_to_mask"] = {int(k): _cpu(v) for k, v in obj_id_to_mask.items()}
            tensors["obj_id_to_score"] = {int(k): float(v) for k, v in obj_id_to_score.items()}
            tensors["obj_id_to_tracker_score"] = {int(k): float(v) for k, v in metadata["obj_id_to_tracker_score_frame_wise"][frame_idx].items()}
            tensors["obj_ids_after"] = [int(v) for v in metadata["obj_ids"]]
        return result

    def _nms_masks(self, pred_probs, pred_masks, prob_threshold, iou_threshold):
        keep = self._saved_functions["nms_masks"](pred_probs, pred_masks, prob_threshold, iou_threshold)
        above = pred_probs > prob_threshold
        valid = int(above.sum())
        self.margins.add("score_threshold_detection", pred_probs, prob_threshold)
        self.margins.near_zero("detector_mask_logits", pred_masks[above])
        if valid > 1:
            self.margins.add_iou("det_nms_thresh", pred_masks[above] > 0, None, iou_threshold, upper=True)
        kept = int(keep.sum())
        frame = self._frame()
        frame["nms"].append({"above_threshold": valid, "kept": kept})
        frame["nms_suppressed"] += valid - kept
        if self.keep_tensors:
            self._tensors().setdefault("nms_keep", []).append(_cpu(keep))
        return keep

    def _fill_holes(self, mask, max_area, fill_holes=True, remove_sprinkles=True):
        out = self._saved_functions["fill_holes_in_mask_scores"](mask, max_area, fill_holes=fill_holes, remove_sprinkles=remove_sprinkles)
        site = self._frame()["hole_fill"][self._site]
        site["calls"] += 1
        site["filled"] += int(((mask <= 0) & (out > 0)).sum())
        site["removed"] += int(((mask > 0) & (out <= 0)).sum())
        if self.keep_tensors:
            self._tensors().setdefault(f"hole_fill_{self._site}", []).append({"before": _cpu(mask), "after": _cpu(out)})
        return out

    def _merge_detections_from_prompts(self, all_detections, inference_session):
        det_out, det_idx_to_prompt_id = self._original("_merge_detections_from_prompts")(all_detections, inference_session)
        self._frame()["detections_per_prompt"] = {str(int(pid)): int(len(d["scores"])) for pid, d in all_detections.items()}
        if self.keep_tensors:
            tensors = self._tensors()
            tensors["detections"] = {k: _cpu(v) for k, v in det_out.items()}
            tensors["detection_prompt_ids"] = [int(det_idx_to_prompt_id[i]) for i in range(len(det_out["scores"]))]
        return det_out, det_idx_to_prompt_id

    def _run_tracker_propagation(self, inference_session, frame_idx, reverse):
        self._site = "tracker"
        try:
            masks, scores = self._original("run_tracker_propagation")(inference_session, frame_idx, reverse)
        finally:
            self._site = "new_detections"  # the only other caller: build_outputs, after the planning
        self.margins.near_zero("tracker_mask_logits", masks)
        if self.keep_tensors:
            tensors = self._tensors()
            tensors["tracker_obj_ids"] = [int(v) for v in inference_session.obj_ids]
            tensors["tracker_low_res_masks"] = _cpu(masks)  # after hole filling
            tensors["tracker_obj_score_logits"] = _cpu(scores)
        return masks, scores

    def _run_tracker_update_planning_phase(self, **kwargs):
        self._association_margins(kwargs)
        plan, metadata = self._original("run_tracker_update_planning_phase")(**kwargs)
        frame = self._frame()
        frame["new_obj_ids"] = [int(v) for v in plan["new_det_obj_ids"]]
        frame["hotstart_removed_obj_ids"] = _ids(plan["obj_ids_newly_removed"])
        frame["hotstart_removal_reasons"] = self._removal_reasons(plan["obj_ids_newly_removed"], metadata["extra_metadata"])
        frame["reconditioned_obj_ids"] = _ids(plan["reconditioned_obj_ids"])
        frame["unmatched_trk_obj_ids"] = _ids(plan["unmatched_trk_obj_ids"])
        frame["det_to_matched_trk_obj_ids"] = {str(int(k)): [int(v) for v in vs] for k, vs in plan["det_to_matched_trk_obj_ids"].items()}
        frame["dropped_due_to_limit"] = int(plan["num_obj_dropped_due_to_limit"])
        if self.keep_tensors:
            self._tensors()["plan"] = {
                "new_det_out_inds": [int(v) for v in plan["new_det_out_inds"]],
                "new_det_obj_ids": frame["new_obj_ids"],
                "obj_ids_newly_removed": frame["hotstart_removed_obj_ids"],
                "reconditioned_obj_ids": frame["reconditioned_obj_ids"],
                "unmatched_trk_obj_ids": frame["unmatched_trk_obj_ids"],
                "trk_id_to_max_iou_high_conf_det": {int(k): int(v) for k, v in plan["trk_id_to_max_iou_high_conf_det"].items()},
            }
        return plan, metadata

    def _removal_reasons(self, removed, extra: dict) -> dict:
        """obj id -> "unmatched" (unmatched on hotstart_unmatch_thresh frames) and/or "duplicate"
        (overlapping an earlier track on hotstart_dup_thresh frames), as _process_hotstart decides."""
        m, reasons = self.model, {}
        for obj in sorted(int(o) for o in removed):
            why = []
            if len(extra["unmatched_frame_inds"].get(obj, ())) >= m.hotstart_unmatch_thresh:
                why.append("unmatched")
            if any(pair[1] == obj and len(frames) >= m.hotstart_dup_thresh for pair, frames in extra["overlap_pair_to_frame_inds"].items()):
                why.append("duplicate")
            reasons[str(obj)] = "+".join(why)
        return reasons

    def _association_margins(self, kw: dict) -> None:
        """The values the planning phase compares with its thresholds, before it runs."""
        m, session = self.model, kw["inference_session"]
        det_masks, det_scores = kw["det_out"]["mask"], kw["det_out"]["scores"].float()
        trk_masks, trk_logits = kw["tracker_low_res_masks_global"], kw["tracker_obj_scores_global"]
        self.margins.add("new_det_thresh", det_scores, m.new_det_thresh)
        self.margins.add("high_conf_thresh", det_scores, m.high_conf_thresh)
        if trk_masks.shape[0] and det_masks.shape[0]:
            self.margins.add("high_conf_thresh (tracker logits)", trk_logits, m.high_conf_thresh)
            det_prompts = torch.tensor([kw["det_idx_to_prompt_id"][i] for i in range(det_masks.shape[0])])
            trk_prompts = torch.tensor([session.obj_id_to_prompt_id[o] for o in session.obj_ids])
            same = det_prompts[:, None] == trk_prompts[None, :]
            for name in ("assoc_iou_thresh", "trk_assoc_iou_thresh", "high_iou_thresh"):
                self.margins.add_iou(name, det_masks > 0, trk_masks > 0, getattr(m, name), where=same)
            # The pairs that decide whether a detection becomes a new object.
            candidates = same & (det_scores >= m.new_det_thresh)[:, None]
            self.margins.add_iou("assoc_iou_thresh (new-object candidates)", det_masks > 0, trk_masks > 0, m.assoc_iou_thresh, where=candidates)

    def _get_objects_to_suppress_based_on_most_recently_occluded(self, binary_low_res_masks, last_occluded, obj_ids, reverse=False):
        fn = self._original("_get_objects_to_suppress_based_on_most_recently_occluded")
        if len(obj_ids) > 1:
            thr = self.model.suppress_overlapping_based_on_recent_occlusion_threshold
            self.margins.add_iou("suppress_overlapping_based_on_recent_occlusion_threshold", binary_low_res_masks, None, thr, upper=True)
        to_suppress = fn(binary_low_res_masks, last_occluded, obj_ids, reverse)
        hit = [int(obj_ids[i]) for i in torch.nonzero(to_suppress, as_tuple=True)[0].tolist()]
        self._frame()["occlusion_suppressed_obj_ids"].extend(hit)
        return to_suppress


class Margins:
    """Closest calls: per threshold, the smallest |value - threshold| among the values compared with
    it (and the value), so a parity test knows how far a small numerical difference may go before a
    decision flips; per kind of mask logits, how many sat within NEAR_ZERO of 0 (a binarisation that
    may flip)."""

    NEAR_ZERO = 1e-6

    def __init__(self):
        self.closest: dict[str, dict] = {}
        self.near: dict[str, int] = {}

    def add(self, name: str, values: torch.Tensor, threshold: float) -> None:
        """Values of a bfloat16 (float16) tensor compare with the threshold rounded to that dtype, as
        torch compares a tensor with a Python float: the distance is from that ("threshold_as_compared";
        0 means the value sits on it, and a strict comparison flips when the value moves one step)."""
        compared = float(threshold)
        if values.dtype in (torch.bfloat16, torch.float16):
            compared = float(torch.tensor(float(threshold), dtype=values.dtype))
        values = values.detach().float().reshape(-1)
        if not values.numel():
            return
        gaps = (values - compared).abs()
        i = int(torch.argmin(gaps))
        best = self.closest.get(name)
        if best is None or float(gaps[i]) < best["distance"]:
            self.closest[name] = {"distance": float(gaps[i]), "value": float(values[i]), "threshold": float(threshold)}
            if compared != float(threshold):
                self.closest[name]["threshold_as_compared"] = compared

    def add_iou(self, name: str, a: torch.Tensor, b: torch.Tensor | None, threshold: float, where=None, upper: bool = False) -> None:
        """IoUs of the binary masks a (N,H,W) x b (M,H,W) (a x a without b; upper: pairs i < j only;
        where: an (N,M) selection), as transformers' mask_iou computes them. Also records, per
        threshold, the fewest pixels |intersection - threshold * union| between a pair and the
        threshold as "flips": ceil(|intersection - threshold * union| / (1 + threshold)), about how
        many mask pixels must flip before that comparison does (0: the IoU sits on the threshold)."""
        b = a if b is None else b
        fa, fb = a.flatten(1).float(), b.flatten(1).float()
        inter = fa @ fb.T
        union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
        ious = inter / union.clamp(min=1)
        pick = torch.ones_like(ious, dtype=torch.bool) if where is None else where.clone()
        if upper:
            pick &= torch.triu(torch.ones_like(pick), diagonal=1)
        if not bool(pick.any()):
            return
        self.add(name, ious[pick], threshold)
        t = float(threshold)
        flips = torch.ceil((inter - t * union.clamp(min=1)).abs()[pick] / (1 + t) - 1e-9).clamp(min=0)
        best = self.closest[name]
        best["flips"] = int(min(best.get("flips", 1 << 30), int(flips.min())))

    def near_zero(self, name: str, logits: torch.Tensor) -> None:
        self.near[name] = self.near.get(name, 0) + int((logits.detach().float().abs() < self.NEAR_ZERO).sum())

    def report(self) -> dict:
        return {"closest": dict(sorted(self.closest.items())), f"mask_logits_within_{self.NEAR_ZERO:g}_of_zero": dict(sorted(self.near.items()))}


def _by_frame(frames: list[dict], key: str) -> dict:
    """{frame index: the ids under key}, for the frames with any (a frame processed more than once,
    as op sequences do, gets its ids from every time, in order)."""
    out: dict[str, list[int]] = {}
    for f in frames:
        if f.get(key):
            out.setdefault(str(f["frame_index"]), []).extend(f[key])
    return out


def summarise(frames: list[dict], first_frame: int | None) -> dict:
    """Per-case statistics over the processed frames: evidence that each mechanism fired. "First
    frame" is first_frame (the first processed one); "after" means the other frames."""
    later = [f for f in frames if f["frame_index"] != first_frame]
    first = next((f for f in frames if f["frame_index"] == first_frame), None)
    fill = {"filled": 0, "removed": 0}
    for f in frames:
        for site in f["hole_fill"].values():
            fill["filled"] += site["filled"]
            fill["removed"] += site["removed"]
    return {
        "frames_processed": [f["frame_index"] for f in frames],
        "detections_first_frame": sum(first["detections_per_prompt"].values()) if first else 0,
        # every time the first frame was processed (op sequences run a prompt's frame again)
        "objects_first_frame": sum(len(f.get("new_obj_ids", [])) for f in frames if f["frame_index"] == first_frame),
        "detections_total": sum(sum(f["detections_per_prompt"].values()) for f in frames),
        "nms_suppressed": sum(f["nms_suppressed"] for f in frames),
        "objects_created_after_first_frame": sum(len(f.get("new_obj_ids", [])) for f in later),
        "new_objects_by_frame": _by_frame(frames, "new_obj_ids"),
        "hotstart_removed": sum(len(f.get("hotstart_removed_obj_ids", [])) for f in frames),
        "hotstart_removed_by_frame": _by_frame(frames, "hotstart_removed_obj_ids"),
        "reconditioning_events": sum(len(f.get("reconditioned_obj_ids", [])) for f in frames),
        "occlusion_suppressions": sum(len(f["occlusion_suppressed_obj_ids"]) for f in frames),
        "hole_fill_pixels_filled": fill["filled"],
        "sprinkle_pixels_removed": fill["removed"],
        "hole_fill_pixels_changed": fill["filled"] + fill["removed"],
    }
