#include "core/memory_bank.h"

#include <algorithm>
#include <cstdlib>
#include <optional>

namespace sam3 {

CondFrameSelection SelectClosestCondFrames(const OrderedOuts& cond, int64_t frame, int64_t max_cond_frames) {
  CondFrameSelection out;
  const auto& order = cond.order;
  if (max_cond_frames == -1 || static_cast<int64_t>(order.size()) <= max_cond_frames) {
    out.selected = order;
    return out;
  }
  std::optional<int64_t> before, after;
  for (int64_t t : order) {
    if (t < frame && (!before || t > *before)) before = t;
    if (t >= frame && (!after || t < *after)) after = t;
  }
  if (before) out.selected.push_back(*before);
  if (after && (!before || *after != *before)) out.selected.push_back(*after);
  std::vector<int64_t> rest;
  for (int64_t t : order) {
    if (std::find(out.selected.begin(), out.selected.end(), t) == out.selected.end()) rest.push_back(t);
  }
  std::stable_sort(rest.begin(), rest.end(), [frame](int64_t a, int64_t b) { return std::llabs(a - frame) < std::llabs(b - frame); });
  const int64_t remain = max_cond_frames - static_cast<int64_t>(out.selected.size());
  for (int64_t i = 0; i < static_cast<int64_t>(rest.size()); i++) {
    if (i < remain) out.selected.push_back(rest[i]);
    else out.unselected.insert(rest[i]);
  }
  return out;
}

MemoryFrames GatherMemoryFrameOutputs(const ObjectState& obj, const CondFrameSelection& cond, int64_t frame, bool reverse,
                                      const TrackerConfig& c) {
  MemoryFrames out;
  auto add = [&out](const FrameOut* o, int64_t offset) {
    if (!o || !o->maskmem.defined()) return;
    out.maskmem.push_back(o->maskmem);
    out.maskmem_pos.push_back(o->maskmem_pos);
    out.offsets.push_back(offset);
  };
  for (int64_t t : cond.selected) add(obj.cond.find(t), 0);
  // The num_maskmem - 1 frames before this one (after it, in reverse); an unselected conditioning
  // frame stands in where there is no tracked output.
  for (int64_t off = c.num_maskmem - 1; off >= 1; off--) {
    const int64_t prev = reverse ? frame + off : frame - off;
    const FrameOut* o = obj.non_cond.find(prev);
    if (!o && cond.unselected.count(prev)) o = obj.cond.find(prev);
    add(o, off);
  }
  return out;
}

ObjectPointers GetObjectPointers(const ObjectState& obj, int64_t frame, bool reverse, int64_t num_frames, const TrackerConfig& c) {
  ObjectPointers out;
  const int64_t sign = reverse ? -1 : 1;
  out.max_pointers = std::min<int64_t>(num_frames, c.max_pointers);
  for (int64_t t : obj.cond.order) {
    if (reverse ? t >= frame : t <= frame) {
      out.pointers.push_back(obj.cond.find(t)->object_pointer);
      out.offsets.push_back((frame - t) * sign);
    }
  }
  for (int64_t d = 1; d < out.max_pointers; d++) {
    const int64_t ref = reverse ? frame + d : frame - d;
    if (ref < 0 || ref >= num_frames) break;
    const FrameOut* o = obj.non_cond.find(ref);
    if (o) {
      out.pointers.push_back(o->object_pointer);
      out.offsets.push_back(d);
    }
  }
  return out;
}

// Tracked (non-conditioning) outputs are only read within max(num_maskmem, max_pointers) frames
// of the frame being tracked; keep those around the current front and around every prompted
// frame (where a propagation in the other direction starts) and drop the rest, so an object's
// memory bank stays bounded however long the video.
void PruneMemories(VideoState& v, int64_t frame) {
  const int64_t w = v.memory_window;
  for (ObjectState& obj : v.objects) {
    std::vector<int64_t> drop;
    for (int64_t t : obj.non_cond.order) {
      if (std::llabs(t - frame) <= w) continue;
      bool near_cond = false;
      for (int64_t c : obj.cond.order) near_cond = near_cond || (!obj.cond.items.at(c).reconditioned && std::llabs(t - c) <= w);
      if (!near_cond) drop.push_back(t);
    }
    for (int64_t t : drop) obj.non_cond.erase(t);
    // Conditioning frames that concept tracking's reconditioning made from tracked frames (one
    // every recondition_every_nth_frame frames) are bounded like tracked frames; transformers keeps
    // them all, which differs only when a later propagation comes back to frames this far away.
    std::vector<int64_t> old_recond;
    for (int64_t c : obj.cond.order) {
      if (obj.cond.items.at(c).reconditioned && std::llabs(c - frame) > w) old_recond.push_back(c);
    }
    for (int64_t c : old_recond) obj.cond.erase(c);
    // Low-res masks of tracked frames are never read again.
    for (auto& [t, out] : obj.non_cond.items) out.pred_masks = torch::Tensor();
  }
}

}  // namespace sam3
