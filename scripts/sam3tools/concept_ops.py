"""Op sequences of a concept-tracking case: the server API's calls on one session, as the calls to
transformers' ``Sam3VideoModel`` / ``Sam3VideoProcessor`` that mean the same (concept_reference runs
them). Pure Python (no torch): validation and frame plans only.

A case's ``"ops"`` list, run in order on one fresh session::

    {"op": "prompt", "text": "red disc", "frame": 0}
        processor.add_text_prompt(session, text) (an existing text keeps its prompt id), then ONE
        model(inference_session=session, frame_idx=frame) (Sam3VideoModel.forward: the detector for
        every prompt registered so far, association, new objects, hotstart bookkeeping on that frame,
        reverse=False) and processor.postprocess_outputs of its output. No hotstart output delay for
        this call, and session.hotstart_removed_obj_ids is left alone (only the iterator updates it).
    {"op": "propagate", "start": 0, "direction": "forward" | "backward" | "both", "max_frames": null}
        model.propagate_in_video_iterator, each yielded output post-processed as it is yielded (the
        iterator has updated session.hotstart_removed_obj_ids by then). The server's frames:
          forward:  start, start+1, .., min(start + max_frames, n - 1)
          backward: start, start-1, .., max(start - max_frames, 0)   (the start frame included)
          both:     forward as above, then start-1, .., max(start - max_frames, 0)
        (max_frames null: to the end of the video). transformers' reverse iterator begins at its
        start_frame_idx - 1 and stops at max(start_frame_idx - max_frame_num_to_track, 0), so backward
        is called with (start + 1, max_frames + 1) and both's second call with (start, max_frames);
        a null max_frames stays None. A call with no frames to process (both from frame 0) is skipped.
    {"op": "remove", "obj_id": 3}
        session.remove_object(obj_id, strict=False) (an unknown id: nothing happens).
"""
from __future__ import annotations

OPS = ("prompt", "propagate", "remove")
DIRECTIONS = ("forward", "backward", "both")
OP_KEYS = {"prompt": {"text", "frame"}, "propagate": {"start", "direction", "max_frames"}, "remove": {"obj_id"}}


def _count(where: str, value, key: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: {key} must be an integer >= 0{' or null' if allow_none else ''}, got {value!r}")
    return value


def check_ops(case_name: str, ops) -> list[dict]:
    """The case's ops, validated and normalised (defaults filled in); ValueError otherwise. Frame
    indices are checked against the video's length by check_frames once it is known."""
    if not isinstance(ops, list) or not ops:
        raise ValueError(f"case {case_name}: ops must be a non-empty list")
    out = []
    for i, op in enumerate(ops):
        where = f"case {case_name}, op {i}"
        if not isinstance(op, dict) or op.get("op") not in OPS:
            raise ValueError(f"{where}: expected {{'op': one of {', '.join(OPS)}, ...}}, got {op!r}")
        kind = op["op"]
        unknown = set(op) - OP_KEYS[kind] - {"op"}
        if unknown:
            raise ValueError(f"{where}: unknown keys for {kind}: {', '.join(sorted(unknown))}")
        if kind == "prompt":
            text = op.get("text")
            if not isinstance(text, str) or not text:
                raise ValueError(f"{where}: prompt needs a non-empty text")
            out.append({"op": kind, "text": text, "frame": _count(where, op.get("frame"), "frame")})
        elif kind == "propagate":
            direction = op.get("direction", "forward")
            if direction not in DIRECTIONS:
                raise ValueError(f"{where}: direction must be forward, backward or both, got {direction!r}")
            out.append({"op": kind, "start": _count(where, op.get("start"), "start"), "direction": direction,
                        "max_frames": _count(where, op.get("max_frames"), "max_frames", allow_none=True)})
        else:
            out.append({"op": kind, "obj_id": _count(where, op.get("obj_id"), "obj_id")})
    return out


def check_frames(case_name: str, ops: list[dict], num_frames: int) -> None:
    """Every prompt frame and propagation start is a frame of the video (ValueError)."""
    for i, op in enumerate(ops):
        key = {"prompt": "frame", "propagate": "start"}.get(op["op"])
        if key and op[key] >= num_frames:
            raise ValueError(f"case {case_name}, op {i}: {key} {op[key]} is outside the {num_frames} frames")


def server_frames(start: int, direction: str, max_frames: int | None, num_frames: int) -> list[int]:
    """The frames a propagate op processes, in order, as the server's API defines them."""
    m = num_frames if max_frames is None else max_frames
    frames = []
    if direction != "backward":
        frames += range(start, min(start + m, num_frames - 1) + 1)
    if direction == "backward":
        frames += range(start, max(start - m, 0) - 1, -1)
    if direction == "both":
        frames += range(start - 1, max(start - m, 0) - 1, -1)
    return frames


def op_frames(op: dict, num_frames: int) -> list[int]:
    """The frames an op processes (and outputs), in order: a prompt its frame, a removal none."""
    if op["op"] == "prompt":
        return [op["frame"]]
    if op["op"] == "propagate":
        return server_frames(op["start"], op["direction"], op["max_frames"], num_frames)
    return []


def transformers_order(start_frame_idx: int, max_frame_num_to_track: int | None, reverse: bool, num_frames: int) -> list[int]:
    """The frames propagate_in_video_iterator processes for these arguments (its _get_processing_order)."""
    m = num_frames if max_frame_num_to_track is None else max_frame_num_to_track
    if reverse:
        return list(range(start_frame_idx - 1, max(start_frame_idx - m, 0) - 1, -1))
    return list(range(start_frame_idx, min(start_frame_idx + m, num_frames - 1) + 1))


def iterator_calls(start: int, direction: str, max_frames: int | None, num_frames: int) -> list[dict]:
    """propagate_in_video_iterator's arguments for one propagate op, each with the frames it will
    process ("frames"); calls that would process nothing are left out. Their frames, concatenated,
    are server_frames(...) (asserted)."""
    plus_one = None if max_frames is None else max_frames + 1
    args = {
        "forward": [(start, max_frames, False)],
        "backward": [(start + 1, plus_one, True)],
        "both": [(start, max_frames, False), (start, max_frames, True)],
    }[direction]
    calls = []
    for s, m, reverse in args:
        frames = transformers_order(s, m, reverse, num_frames)
        if frames:
            calls.append({"start_frame_idx": s, "max_frame_num_to_track": m, "reverse": reverse, "frames": frames})
    got = [f for c in calls for f in c["frames"]]
    want = server_frames(start, direction, max_frames, num_frames)
    if got != want:
        raise AssertionError(f"propagate {direction} from {start} (max {max_frames}): transformers would process {got}, the server {want}")
    return calls
