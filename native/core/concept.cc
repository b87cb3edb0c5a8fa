#include "core/concept.h"

#include <algorithm>
#include <cmath>

#include "core/mask_ops.h"
#include "core/rle.h"

namespace sam3 {
namespace {

namespace F = torch::nn::functional;

constexpr int64_t kNeverOccluded = -1;
constexpr int64_t kAlwaysOccluded = 100000;  // removed by hotstart: suppressed whenever it overlaps
constexpr double kNoObjLogit = -10.0;
constexpr float kRemovedScore = -1e4f;

// Objects made by box/point prompts belong to no concept: each is a group of its own, so neither
// association nor suppression ever pairs it with another object.
int64_t GroupOf(const ConceptState& cs, int64_t obj_id) {
  auto it = cs.obj_prompt.find(obj_id);
  return it == cs.obj_prompt.end() ? -2 - obj_id : it->second;
}

bool IsConceptObject(const ConceptState& cs, int64_t obj_id) { return cs.obj_prompt.count(obj_id) > 0; }

std::vector<int64_t> ObjectIds(const VideoState& v) {
  std::vector<int64_t> ids;
  for (const ObjectState& o : v.objects) ids.push_back(o.id);
  return ids;
}

std::vector<int64_t> ToVector(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kLong).to(torch::kCPU).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

std::vector<float> ToFloats(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kFloat32).to(torch::kCPU).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// The merged detections of every concept (_merge_detections_from_prompts).
struct Detections {
  torch::Tensor boxes, masks, scores;  // [N,4] xyxy, [N,m,m] logits, [N] float32 (of the model dtype's values)
  std::vector<int64_t> prompt;         // det_idx_to_prompt_id
  int64_t size() const { return static_cast<int64_t>(prompt.size()); }
};

// run_detection + _merge_detections_from_prompts: per concept, the queries above
// score_threshold_detection that survive mask NMS, in query order; concepts in prompt order. The
// thresholds compare the model dtype's probabilities (as transformers does); the merged scores are
// their float32 values (run_tracker_update_planning_phase's det_scores.float()).
Detections RunDetection(const ConceptState& cs, ModelState& model, FeaturesState& feats) {
  const ConceptConfig& c = cs.config;
  std::vector<torch::Tensor> boxes, masks, scores;
  Detections out;
  for (size_t p = 0; p < cs.prompts.size(); p++) {
    if (!cs.prompts[p]) continue;  // removed
    const double threshold = cs.prompt_thresholds[p];
    ConceptDetections d = DetectConcept(model, feats, cs.prompts[p], threshold);
    if (d.valid.numel() == 0) continue;
    torch::Tensor probs = d.scores.index_select(0, d.valid);
    torch::Tensor rows = torch::arange(d.valid.numel(), torch::TensorOptions().dtype(torch::kLong).device(d.valid.device()));
    if (c.det_nms_thresh > 0.0) rows = NmsMasks(probs, d.masks, threshold, c.det_nms_thresh).nonzero().flatten();
    if (rows.numel() == 0) continue;
    boxes.push_back(d.boxes.index_select(0, d.valid.index_select(0, rows)));
    masks.push_back(d.masks.index_select(0, rows));
    scores.push_back(probs.index_select(0, rows).to(torch::kFloat32));
    out.prompt.insert(out.prompt.end(), rows.numel(), static_cast<int64_t>(p));
  }
  const int64_t m = model.config.mask_size;
  auto opts = torch::TensorOptions().device(model.device);
  out.boxes = boxes.empty() ? torch::zeros({0, 4}, opts.dtype(model.config.dtype)) : torch::cat(boxes, 0);
  out.masks = masks.empty() ? torch::zeros({0, m, m}, opts.dtype(model.config.dtype)) : torch::cat(masks, 0);
  out.scores = scores.empty() ? torch::zeros({0}, opts.dtype(torch::kFloat32)) : torch::cat(scores, 0);
  return out;
}

// What _associate_det_trk decides.
struct Association {
  std::vector<int64_t> new_det;                    // new_det_out_inds
  std::vector<int64_t> unmatched_trk;              // unmatched_trk_obj_ids
  std::vector<std::pair<int64_t, std::vector<int64_t>>> det_to_matched;  // det_to_matched_trk_obj_ids, det order
  std::map<int64_t, int64_t> trk_to_best_det;      // trk_id_to_max_iou_high_conf_det
  std::vector<int64_t> empty_trk;                  // empty_trk_obj_ids
};

Association AssociateDetTrk(const ConceptConfig& c, const Detections& det, const torch::Tensor& trk_masks, const std::vector<int64_t>& trk_ids,
                            const std::vector<int64_t>& trk_groups) {
  Association a;
  const int64_t n = det.size(), m = trk_masks.size(0);
  if (m == 0) {
    for (int64_t i = 0; i < n; i++) a.new_det.push_back(i);
    return a;
  }
  std::vector<int64_t> nonempty = ToVector((trk_masks > 0).flatten(1).any(1));
  if (n == 0) {
    for (int64_t j = 0; j < m; j++) (nonempty[j] ? a.unmatched_trk : a.empty_trk).push_back(trk_ids[j]);
    return a;
  }
  torch::Tensor ious = MaskIou(det.masks > 0, trk_masks > 0);
  auto dev = ious.device();
  torch::Tensor dp = torch::tensor(det.prompt, torch::kLong).to(dev).unsqueeze(1);
  torch::Tensor tp = torch::tensor(trk_groups, torch::kLong).to(dev).unsqueeze(0);
  ious = torch::where(dp == tp, ious, torch::zeros_like(ious));
  std::vector<int64_t> trk_matched = ToVector((ious >= c.trk_assoc_iou_thresh).any(0));
  for (int64_t j = 0; j < m; j++) {
    if (nonempty[j] && !trk_matched[j]) a.unmatched_trk.push_back(trk_ids[j]);
    if (!nonempty[j]) a.empty_trk.push_back(trk_ids[j]);
  }
  torch::Tensor is_new = (det.scores >= c.new_det_thresh) & ~(ious >= c.assoc_iou_thresh).any(1);
  a.new_det = ToVector(is_new.nonzero().flatten());
  auto best = ious.max(1);
  torch::Tensor high = (det.scores >= c.high_conf_thresh) & ~is_new & (std::get<0>(best) >= c.high_iou_thresh);
  std::vector<int64_t> high_v = ToVector(high), best_idx = ToVector(std::get<1>(best));
  // One copy to the host, then plain reads (not a tensor op per detection-track pair).
  torch::Tensor matched = (ious >= c.assoc_iou_thresh).to(torch::kCPU).contiguous();
  const bool* mp = matched.data_ptr<bool>();
  for (int64_t i = 0; i < n; i++) {
    std::vector<int64_t> ids;
    for (int64_t j = 0; j < m; j++) {
      if (mp[i * m + j]) ids.push_back(trk_ids[j]);
    }
    a.det_to_matched.emplace_back(i, std::move(ids));
    if (high_v[i]) a.trk_to_best_det[trk_ids[best_idx[i]]] = i;
  }
  return a;
}

// _process_hotstart: the object ids newly removed on this frame (also updates the keep-alive
// counters, unmatched and overlap counts, and this frame's suppressed ids). Removed objects' entries
// are gone (RemoveConceptObject), which transformers skips through removed_obj_ids instead.
std::set<int64_t> ProcessHotstart(ConceptState& cs, int64_t frame, bool reverse, const Association& a, const std::vector<int64_t>& new_ids) {
  const ConceptConfig& c = cs.config;
  std::set<int64_t> newly;
  std::set<int64_t>& suppressed = cs.suppressed[frame];
  const int64_t diff = reverse ? frame + c.hotstart_delay : frame - c.hotstart_delay;
  auto within = [&](int64_t id) { return reverse ? cs.first_frame[id] < diff : cs.first_frame[id] > diff; };
  for (int64_t id : new_ids) {
    if (!cs.first_frame.count(id)) cs.first_frame[id] = frame;
    cs.keep_alive[id] = c.init_trk_keep_alive;
  }
  std::set<int64_t> matched;
  for (const auto& [d, ids] : a.det_to_matched) matched.insert(ids.begin(), ids.end());
  for (int64_t id : matched) cs.keep_alive[id] = std::min(c.max_trk_keep_alive, cs.keep_alive[id] + 1);
  for (int64_t id : a.unmatched_trk) {
    cs.unmatched_frames[id]++;
    cs.keep_alive[id] = std::max(c.min_trk_keep_alive, cs.keep_alive[id] - 1);
  }
  if (c.decrease_trk_keep_alive_for_empty_masklets) {
    for (int64_t id : a.empty_trk) cs.keep_alive[id] = std::max(c.min_trk_keep_alive, cs.keep_alive[id] - 1);
  }
  // Young tracks unmatched for hotstart_unmatch_thresh frames go; old ones unmatched for too long are hidden.
  for (const auto& [id, count] : cs.unmatched_frames) {
    if (count >= c.hotstart_unmatch_thresh && within(id)) newly.insert(id);
    if (cs.keep_alive[id] <= 0 && !c.suppress_unmatched_only_within_hotstart && !newly.count(id)) suppressed.insert(id);
  }
  // Tracks matched to the same detection as an older track: the younger ones are duplicates.
  for (const auto& [d, ids] : a.det_to_matched) {
    if (ids.size() < 2) continue;
    int64_t first = ids[0];
    for (int64_t id : ids) {
      const bool earlier = reverse ? cs.first_frame[id] > cs.first_frame[first] : cs.first_frame[id] < cs.first_frame[first];
      if (earlier) first = id;
    }
    for (int64_t id : ids) {
      if (id != first) cs.overlap_pairs[{first, id}]++;
    }
  }
  for (const auto& [pair, count] : cs.overlap_pairs) {
    const int64_t id = pair.second;
    if (newly.count(id)) continue;
    if (within(id) && count >= c.hotstart_dup_thresh) newly.insert(id);
  }
  return newly;
}

// _get_objects_to_suppress_based_on_most_recently_occluded within one concept.
torch::Tensor MostRecentlyOccluded(const ConceptConfig& c, const torch::Tensor& bin, const torch::Tensor& last, bool reverse) {
  torch::Tensor iou = MaskIou(bin, bin);
  torch::Tensor over = torch::triu(iou >= c.suppress_overlapping_based_on_recent_occlusion_threshold, 1);
  torch::Tensor li = last.unsqueeze(1), lj = last.unsqueeze(0);
  torch::Tensor i_after = reverse ? li < lj : li > lj;
  torch::Tensor j_after = reverse ? lj < li : lj > li;
  torch::Tensor sup_i = over & i_after & (lj > kNeverOccluded);
  torch::Tensor sup_j = over & j_after & (li > kNeverOccluded);
  return sup_i.any(1) | sup_j.any(0);
}

// _suppress_overlapping_based_on_recent_occlusion: masks of suppressed objects become -10 in place;
// returns obj_id_to_last_occluded for the frame's objects.
std::map<int64_t, int64_t> SuppressOverlappingBasedOnRecentOcclusion(const ConceptState& cs, const std::vector<int64_t>& ids, torch::Tensor& masks,
                                                                     const std::set<int64_t>& newly_removed, int64_t frame, bool reverse) {
  torch::Tensor bin = masks > 0;
  std::vector<int64_t> last, groups;
  for (int64_t id : ids) {
    auto it = cs.last_occluded.find(id);
    last.push_back(it != cs.last_occluded.end() ? it->second : newly_removed.count(id) ? kAlwaysOccluded : kNeverOccluded);
    groups.push_back(GroupOf(cs, id));
  }
  torch::Tensor last_t = torch::tensor(last, torch::kLong).to(masks.device());
  torch::Tensor to_suppress = torch::zeros({static_cast<int64_t>(ids.size())}, torch::TensorOptions().dtype(torch::kBool).device(masks.device()));
  for (const auto& [g, rows] : Groups(groups)) {
    if (rows.size() <= 1) continue;
    torch::Tensor idx = torch::tensor(rows, torch::kLong).to(masks.device());
    to_suppress.index_copy_(0, idx, MostRecentlyOccluded(cs.config, bin.index_select(0, idx), last_t.index_select(0, idx), reverse));
  }
  torch::Tensor occluded = ~bin.flatten(1).any(1) | to_suppress;
  std::vector<int64_t> occ = ToVector(occluded);
  std::map<int64_t, int64_t> out;
  for (size_t i = 0; i < ids.size(); i++) out[ids[i]] = occ[i] ? frame : last[i];
  masks.index_put_({to_suppress}, kNoObjLogit);
  return out;
}

// _tracker_update_memories: the frame's memories of every object from its (suppressed) mask, with
// reconditioned objects' masks replaced (the tracker masks change in place, as in transformers),
// pixel-wise shrinkage suppression within each concept, and object scores from mask areas.
void TrackerUpdateMemories(VideoState& v, const ConceptState& cs, const FrameFeatures& f, int64_t frame, torch::Tensor& masks,
                           const std::map<int64_t, torch::Tensor>& reconditioned) {
  if (v.objects.empty()) return;
  torch::Tensor high = masks.unsqueeze(1);
  for (const auto& [idx, m] : reconditioned) {
    high[idx].copy_(m.to(high.dtype()).view_as(high[idx]));
    MakeConditioning(v, static_cast<size_t>(idx), frame);
  }
  std::vector<int64_t> groups;
  for (const ObjectState& o : v.objects) groups.push_back(GroupOf(cs, o.id));
  torch::Tensor shrunk = SuppressObjectPwAreaShrinkage(high, groups);
  torch::Tensor any = (shrunk > 0).flatten(2).any(2);  // [N,1]
  torch::Tensor scores = torch::where(any, torch::scalar_tensor(10.0f), torch::scalar_tensor(-10.0f)).to(high.dtype());
  EncodeFrameMemories(v, frame, f, shrunk, scores);
}

int64_t IndexOf(const VideoState& v, int64_t id) {
  for (size_t i = 0; i < v.objects.size(); i++) {
    if (v.objects[i].id == id) return static_cast<int64_t>(i);
  }
  return -1;
}

}  // namespace

ConceptFrame DetTrackOneFrame(VideoState& v, ConceptState& cs, ModelState& model, FeaturesState& feats, int64_t frame, bool reverse) {
  const ConceptConfig& c = cs.config;
  Detections det = RunDetection(cs, model, feats);
  const FrameFeatures* f = FrameFeaturesFor(v, frame, nullptr, &feats.backbone);

  // run_tracker_propagation: every tracked object on the frame, memories deferred; holes filled.
  const int64_t m = v.tracker->config.low_res;
  torch::Tensor trk_masks, trk_scores;
  if (!v.objects.empty()) {
    auto [lm, sc] = TrackWithoutMemory(v, frame, reverse, *f);
    trk_masks = FillHolesInMaskScores(lm, c.fill_hole_area).squeeze(1);
    trk_scores = sc.squeeze(1);
  } else {
    trk_masks = torch::zeros({0, m, m}, torch::TensorOptions().dtype(v.tracker->config.dtype).device(model.device));
    trk_scores = torch::zeros({0}, torch::TensorOptions().device(model.device));
  }
  const std::vector<int64_t> trk_ids = ObjectIds(v);
  std::vector<int64_t> trk_groups;
  for (int64_t id : trk_ids) trk_groups.push_back(GroupOf(cs, id));

  // run_tracker_update_planning_phase
  Association a = AssociateDetTrk(c, det, trk_masks, trk_ids, trk_groups);
  // Objects made by box/point prompts are tracked, not matched: no hotstart for them.
  auto concept_only = [&](std::vector<int64_t>& ids) {
    ids.erase(std::remove_if(ids.begin(), ids.end(), [&](int64_t id) { return !IsConceptObject(cs, id); }), ids.end());
  };
  concept_only(a.unmatched_trk);
  concept_only(a.empty_trk);
  const int64_t prev = static_cast<int64_t>(trk_ids.size());
  if (prev + static_cast<int64_t>(a.new_det.size()) > c.max_num_objects) {
    const int64_t keep = std::max<int64_t>(0, c.max_num_objects - prev);
    torch::Tensor nd = torch::tensor(a.new_det, torch::kLong).to(det.scores.device());
    std::vector<int64_t> top = ToVector(std::get<1>(torch::topk(det.scores.index_select(0, nd), keep)));
    std::vector<int64_t> kept;
    for (int64_t t : top) kept.push_back(a.new_det[t]);
    a.new_det = kept;
  }
  // Ids continue after every id the video holds (objects of box/point prompts included).
  for (int64_t id : trk_ids) cs.max_obj_id = std::max(cs.max_obj_id, id);
  std::vector<int64_t> new_ids;
  for (size_t i = 0; i < a.new_det.size(); i++) {
    const int64_t id = cs.max_obj_id + 1 + static_cast<int64_t>(i);
    new_ids.push_back(id);
    cs.obj_prompt[id] = det.prompt[a.new_det[i]];
  }
  const std::set<int64_t> newly_removed = ProcessHotstart(cs, frame, reverse, a, new_ids);

  std::map<int64_t, torch::Tensor> reconditioned;  // obj_idx -> mask
  std::set<int64_t> reconditioned_ids;
  if (c.recondition_every_nth_frame > 0 && frame % c.recondition_every_nth_frame == 0 && !a.trk_to_best_det.empty()) {
    // The tracker's score logit against high_conf_thresh in the tracker's dtype, as transformers
    // compares the tensor element with the float.
    std::vector<int64_t> low_score = ToVector(trk_scores <= c.high_conf_thresh);
    for (const auto& [id, d] : a.trk_to_best_det) {
      const int64_t idx = IndexOf(v, id);
      if (low_score[idx]) continue;
      // A view of the tracked mask: a later occlusion suppression shows through, as in transformers.
      reconditioned[idx] = c.recondition_on_trk_masks ? trk_masks.narrow(0, idx, 1).unsqueeze(1) : (det.masks.narrow(0, d, 1).unsqueeze(1) >= 0.5);
      reconditioned_ids.insert(id);
    }
  }

  std::map<int64_t, int64_t> last_occluded;  // tracker_metadata_new["obj_id_to_last_occluded"]
  if (prev > 0) {
    if (c.suppress_overlapping_based_on_recent_occlusion_threshold > 0.0) {
      last_occluded = SuppressOverlappingBasedOnRecentOcclusion(cs, trk_ids, trk_masks, newly_removed, frame, reverse);
    }
    TrackerUpdateMemories(v, cs, *f, frame, trk_masks, reconditioned);
  }
  std::map<int64_t, float>& frame_scores = cs.tracker_score[frame];
  std::vector<float> new_scores = ToFloats(det.scores);
  for (size_t i = 0; i < new_ids.size(); i++) {
    cs.obj_score[new_ids[i]] = new_scores[a.new_det[i]];
    frame_scores[new_ids[i]] = new_scores[a.new_det[i]];
    cs.max_obj_id = std::max(cs.max_obj_id, new_ids[i]);
  }
  for (int64_t id : newly_removed) {
    frame_scores[id] = kRemovedScore;
    last_occluded.erase(id);
  }
  cs.last_occluded = std::move(last_occluded);

  // run_tracker_update_execution_phase: new objects from their detection masks (>= 0.5, at the
  // model's resolution), then the removals.
  torch::Tensor new_masks;
  if (!new_ids.empty()) {
    torch::Tensor nd = torch::tensor(a.new_det, torch::kLong).to(det.masks.device());
    new_masks = det.masks.index_select(0, nd);
    const int64_t r = v.tracker->config.resolution;
    torch::Tensor inputs = (new_masks >= 0.5).to(torch::kFloat32).unsqueeze(1);
    inputs = F::interpolate(inputs, F::InterpolateFuncOptions().size(std::vector<int64_t>{r, r}).mode(torch::kBilinear).align_corners(false).antialias(true));
    AddMaskObjects(v, frame, reverse, new_ids, inputs.to(v.tracker->config.dtype), *f);
  }
  for (int64_t id : newly_removed) RemoveConceptObject(v, cs, id);

  // build_outputs. As in transformers, the tracked masks (one row per object of the frame's start)
  // are paired with the object ids after this frame's additions and removals.
  ConceptFrame out;
  out.frame = frame;
  std::map<int64_t, torch::Tensor> by_id;
  const std::vector<int64_t> ids_now = ObjectIds(v);
  for (size_t i = 0; i < ids_now.size() && static_cast<int64_t>(i) < trk_masks.size(0); i++) by_id[ids_now[i]] = trk_masks[i];
  if (!new_ids.empty()) {
    torch::Tensor filled = FillHolesInMaskScores(new_masks.unsqueeze(1), c.fill_hole_area).squeeze(1);
    for (size_t i = 0; i < new_ids.size(); i++) by_id[new_ids[i]] = filled[static_cast<int64_t>(i)];
  }
  for (int64_t id : reconditioned_ids) by_id[id] = det.masks[a.trk_to_best_det.at(id)];
  out.masks.assign(by_id.begin(), by_id.end());
  if (trk_scores.size(0) > 0) {
    // sigmoid in the tracker's dtype, as transformers takes it: in bfloat16 these probabilities tie
    // more often, and the output's non-overlap rule picks among tied objects by order.
    std::vector<float> probs = ToFloats(torch::sigmoid(trk_scores));
    for (size_t i = 0; i < ids_now.size() && i < probs.size(); i++) frame_scores[ids_now[i]] = probs[i];
  }
  // Scores of the frame's objects only (transformers passes every id's, removed ones at -1e4).
  for (const auto& [id, mask] : out.masks) {
    auto it = cs.obj_score.find(id);
    if (it != cs.obj_score.end()) out.scores[id] = it->second;
  }
  out.tracker_scores = frame_scores;
  out.suppressed = cs.suppressed[frame];
  out.removed = newly_removed;
  // Only the frame at hand reads its tracker scores (a frame visited again sets every score it
  // shows anew), so a long video keeps no other frame's (transformers keeps every frame's); a
  // frame's suppressed ids stay hidden when it is visited again, so only empty sets go.
  std::erase_if(cs.tracker_score, [frame](const auto& e) { return e.first != frame; });
  std::erase_if(cs.suppressed, [frame](const auto& e) { return e.first != frame && e.second.empty(); });
  return out;
}

ConceptResult PostprocessConceptFrame(const VideoState& v, const ConceptState& cs, const ConceptFrame& out) {
  ConceptResult r;
  r.frame = out.frame;
  if (out.masks.empty()) return r;
  const int64_t h = v.height, w = v.width;
  std::vector<int64_t> ids;
  std::vector<torch::Tensor> low;
  for (const auto& [id, m] : out.masks) {
    ids.push_back(id);
    low.push_back(m);
  }
  // Upsampled in the masks' own dtype, as postprocess_outputs does: bfloat16's bilinear kernel
  // puts a few boundary pixels on the other side of 0 than float32's would.
  torch::Tensor up = F::interpolate(torch::stack(low, 0).unsqueeze(1),
                                    F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false));
  torch::Tensor bin = up.squeeze(1) > 0;
  std::vector<int64_t> nonempty = ToVector(bin.flatten(1).any(1));
  std::vector<int64_t> keep;
  for (size_t i = 0; i < ids.size(); i++) {
    const bool hidden = out.suppressed.count(ids[i]) || cs.hotstart_removed.count(ids[i]);
    if (nonempty[i] && !hidden) keep.push_back(static_cast<int64_t>(i));
  }
  if (keep.empty()) return r;
  torch::Tensor masks = bin.index_select(0, torch::tensor(keep, torch::kLong).to(bin.device()));
  std::vector<float> tracker_probs;
  std::vector<int64_t> groups;
  for (int64_t k : keep) {
    const int64_t id = ids[k];
    auto ts = out.tracker_scores.find(id);
    auto ds = out.scores.find(id);
    const float tp = ts == out.tracker_scores.end() ? 0.0f : ts->second;
    r.ids.push_back(id);
    r.prompts.push_back(cs.obj_prompt.count(id) ? cs.obj_prompt.at(id) : -1);
    r.scores.push_back(ds == out.scores.end() ? tp : ds->second);
    r.tracker_scores.push_back(tp);
    tracker_probs.push_back(tp);
    groups.push_back(GroupOf(cs, id));
  }
  // Boxes of the masks before the non-overlap rule (masks_to_boxes), as xywh normalised.
  torch::Tensor cpu = masks.to(torch::kCPU);
  for (int64_t i = 0; i < cpu.size(0); i++) {
    torch::Tensor rows = cpu[i].any(1).nonzero(), cols = cpu[i].any(0).nonzero();
    const float y0 = rows.min().item<int64_t>(), y1 = rows.max().item<int64_t>() + 1;
    const float x0 = cols.min().item<int64_t>(), x1 = cols.max().item<int64_t>() + 1;
    r.boxes.insert(r.boxes.end(), {x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h});
  }
  if (masks.size(0) > 1) {
    torch::Tensor probs = torch::tensor(tracker_probs).to(masks.device());
    masks = ObjectWiseNonOverlap(masks.unsqueeze(1).to(torch::kFloat32), probs, groups, 0.0).squeeze(1) > 0;
  }
  torch::Tensor bytes = masks.to(torch::kUInt8).to(torch::kCPU).contiguous();
  for (int64_t i = 0; i < bytes.size(0); i++) r.masks.push_back(RleEncodeRowMajor(bytes.data_ptr<uint8_t>() + i * h * w, h, w));
  return r;
}

bool RemoveConceptObject(VideoState& v, ConceptState& cs, int64_t obj_id) {
  cs.obj_prompt.erase(obj_id);
  cs.obj_score.erase(obj_id);
  cs.last_occluded.erase(obj_id);
  cs.first_frame.erase(obj_id);
  cs.unmatched_frames.erase(obj_id);
  cs.keep_alive.erase(obj_id);
  // Pairs where it is the younger track go; pairs where it is the older one still count for the
  // younger (as in transformers, whose counts of a pair never change once either track is gone).
  std::erase_if(cs.overlap_pairs, [obj_id](const auto& e) { return e.first.second == obj_id; });
  return RemoveObject(v, obj_id);
}

std::set<int64_t> ConceptStateIds(const ConceptState& cs) {
  std::set<int64_t> ids(cs.hotstart_removed.begin(), cs.hotstart_removed.end());
  auto keys = [&ids](const auto& m) {
    for (const auto& e : m) ids.insert(e.first);
  };
  keys(cs.obj_prompt);
  keys(cs.obj_score);
  keys(cs.last_occluded);
  keys(cs.first_frame);
  keys(cs.unmatched_frames);
  keys(cs.keep_alive);
  for (const auto& [pair, count] : cs.overlap_pairs) ids.insert({pair.first, pair.second});
  return ids;
}

std::vector<ConceptResult> BufferHotstart(const VideoState& v, ConceptState& cs, ConceptFrame out, bool last) {
  cs.hotstart_removed.insert(out.removed.begin(), out.removed.end());
  cs.buffer.push_back(std::move(out));
  std::vector<ConceptFrame> ready;
  if (last) {
    ready.swap(cs.buffer);
  } else if (static_cast<int64_t>(cs.buffer.size()) >= cs.config.hotstart_delay) {
    ready.push_back(std::move(cs.buffer.front()));
    cs.buffer.erase(cs.buffer.begin());
  }
  std::vector<ConceptResult> results;
  for (const ConceptFrame& f : ready) results.push_back(PostprocessConceptFrame(v, cs, f));
  // A removed object is in no later frame, so only the frames still buffered need it hidden.
  std::erase_if(cs.hotstart_removed, [&cs](int64_t id) {
    for (const ConceptFrame& f : cs.buffer) {
      for (const auto& [mid, m] : f.masks) {
        if (mid == id) return false;
      }
    }
    return true;
  });
  return results;
}

}  // namespace sam3
