#include "core/tracker.h"

#include <chrono>
#include <cmath>

#include "core/errors.h"
#include "core/memory_bank.h"
#include "core/postprocess.h"
#include "core/torchscript.h"

namespace sam3 {
namespace {

namespace F = torch::nn::functional;

// What _run_single_frame_inference gives one object on one frame.
struct SingleOut {
  torch::Tensor low_res, high_res, pointer, score;  // [1,1,m,m], [1,1,R,R], [1,C], [1,1,1]
};

// One video's tracking over one frame: Sam3TrackerVideoModel.forward and the steps it calls, named
// as there. Lives for one engine job.
class Stepper {
 public:
  explicit Stepper(VideoState& v) : v_(v), s_(*v.tracker) {}

  // _prepare_vision_features: the frame's features, cached, or computed from the frame's ViT output
  // (given by a detector pass over the same frame) or from rgb (nullptr and no ViT output -> not
  // available). The cache keeps the least recently used frames within the video's byte budget.
  const FrameFeatures* PrepareVisionFeatures(int64_t frame, const torch::Tensor* rgb, const torch::Tensor* vit = nullptr) {
    auto it = v_.features.find(frame);
    if (it != v_.features.end()) {
      Touch(frame);
      return &it->second;
    }
    if (!rgb && !vit) return nullptr;
    torch::Tensor hidden = vit ? *vit : RunBackbone(*s_.model, Preprocess(s_.processor, *rgb));
    auto out = RunTuple(s_.neck, {hidden}, 4, "tracker neck");
    FrameFeatures f{out[0], out[1], out[2], out[3], 0};
    f.bytes = TensorBytes(f.s0) + TensorBytes(f.s1) + TensorBytes(f.top) + TensorBytes(f.top_pos);
    v_.features[frame] = f;
    v_.feature_lru.push_back(frame);
    v_.features_bytes += f.bytes;
    // Evict least recently used frames beyond the budget (never the one just computed).
    while (v_.features_bytes > v_.feature_cache_bytes && v_.feature_lru.size() > 1) {
      const int64_t victim = v_.feature_lru.front();
      v_.feature_lru.erase(v_.feature_lru.begin());
      v_.features_bytes -= v_.features[victim].bytes;
      v_.features.erase(victim);
    }
    return &v_.features[frame];
  }

  // Sam3TrackerVideoModel.forward(session, frame_idx, reverse) for all objects:
  // (low-res masks, score logit) per object.
  // encode_memory false: run_mem_encoder=False (concept tracking encodes them after its planning).
  std::vector<std::pair<torch::Tensor, torch::Tensor>> Forward(int64_t frame, bool reverse, const FrameFeatures& f, bool encode_memory = true) {
    const size_t n = v_.objects.size();
    std::vector<std::pair<torch::Tensor, torch::Tensor>> result(n);
    std::vector<size_t> enc_objs;
    std::vector<torch::Tensor> enc_masks, enc_scores;
    bool enc_from_points = false;
    for (size_t i = 0; i < n; i++) {
      ObjectState& obj = v_.objects[i];
      const bool has_new = std::find(v_.new_inputs.begin(), v_.new_inputs.end(), obj.id) != v_.new_inputs.end();
      FrameOut* cond = obj.cond.find(frame);
      bool is_init = false;
      if (!has_new && cond) {
        result[i] = {cond->pred_masks, cond->score_logit};
        is_init = true;
      } else {
        const PointInput* pts = nullptr;
        const torch::Tensor* mask = nullptr;
        if (has_new) {
          is_init = !obj.WasTracked(frame);
          if (is_init) reverse = false;  // as transformers does (it also affects later objects)
          auto pit = obj.points.find(frame);
          if (pit != obj.points.end()) pts = &pit->second;
          auto mit = obj.masks.find(frame);
          if (mit != obj.masks.end()) mask = &mit->second;
          if (pts || mask) v_.new_inputs.erase(std::find(v_.new_inputs.begin(), v_.new_inputs.end(), obj.id));
        }
        SingleOut out = RunSingleFrameInference(obj, frame, is_init, pts, mask, reverse, f);
        FrameOut stored;
        stored.pred_masks = out.low_res;
        stored.object_pointer = out.pointer;
        stored.score_logit = out.score;
        (is_init ? obj.cond : obj.non_cond).put(frame, std::move(stored));
        result[i] = {out.low_res, out.score};
        if (encode_memory && s_.config.num_maskmem > 0) {
          enc_objs.push_back(i);
          enc_masks.push_back(out.high_res);
          enc_scores.push_back(out.score);
          enc_from_points = enc_from_points || pts || mask;
        }
      }
      if (!is_init) obj.MarkTracked(frame);
    }
    if (!enc_objs.empty()) BatchEncodeMemories(frame, f, enc_objs, enc_masks, enc_scores, enc_from_points);
    PruneMemories(v_, frame);
    return result;
  }

  // _batch_encode_memories: the frame's new memories for the objects that ran on it.
  void BatchEncodeMemories(int64_t frame, const FrameFeatures& f, const std::vector<size_t>& objs, const std::vector<torch::Tensor>& masks,
                           const std::vector<torch::Tensor>& scores, bool from_points) {
    const int64_t b = static_cast<int64_t>(objs.size());
    // One module for all the frame's objects (transformers: any object's mask from its prompt).
    torch::jit::Module& enc = from_points ? s_.mem_enc_points : s_.mem_enc;
    // Every row of the encoder is independent of the others. A GPU runs all objects in one pass;
    // a CPU one object a pass, which gives the same bits faster (bench model, 4 objects: 310-370
    // ms batched against 220-260 ms one by one).
    const int64_t chunk = s_.device.is_cpu() ? 1 : b;
    for (int64_t start = 0; start < b; start += chunk) {
      const int64_t n = std::min(chunk, b - start);
      std::vector<torch::Tensor> m(masks.begin() + start, masks.begin() + start + n);
      std::vector<torch::Tensor> sc(scores.begin() + start, scores.begin() + start + n);
      auto out = RunTuple(enc, {f.top.expand({n, -1, -1, -1}), torch::cat(m, 0), torch::cat(sc, 0)}, 2, "memory encoder");
      if (!v_.maskmem_pos.defined()) v_.maskmem_pos = out[1].narrow(0, 0, 1).clone();
      for (int64_t j = 0; j < n; j++) {
        ObjectState& obj = v_.objects[objs[start + j]];
        FrameOut* target = obj.cond.find(frame);
        if (!target) target = obj.non_cond.find(frame);
        if (target) {
          // A single row is the whole output: kept as it is, no copy.
          target->maskmem = n == 1 ? out[0] : out[0].narrow(0, j, 1).clone();
          target->maskmem_pos = v_.maskmem_pos;
        }
      }
    }
  }

 private:
  void Touch(int64_t frame) {
    auto it = std::find(v_.feature_lru.begin(), v_.feature_lru.end(), frame);
    if (it != v_.feature_lru.end() && std::next(it) != v_.feature_lru.end()) {
      v_.feature_lru.erase(it);
      v_.feature_lru.push_back(frame);
    }
  }

  bool UseMultimask(bool is_init, const PointInput* pts) const {
    const TrackerConfig& c = s_.config;
    const int64_t npts = pts ? pts->labels.size(2) : 0;
    return c.multimask_in_sam && (is_init || c.multimask_for_tracking) && c.multimask_min_pts <= npts && npts <= c.multimask_max_pts;
  }

  SingleOut RunSingleFrameInference(ObjectState& obj, int64_t frame, bool is_init, const PointInput* pts, const torch::Tensor* mask,
                                    bool reverse, const FrameFeatures& f) {
    const TrackerConfig& c = s_.config;
    std::vector<torch::Tensor> out;
    if (mask) {
      // _use_mask_as_output, traced as one piece.
      out = RunTuple(s_.mask_prompt, {f.s0, f.s1, f.top, mask->to(c.dtype)}, 4, "tracker mask prompt");
    } else {
      torch::Tensor pix = is_init ? s_.mem_attn.get_method("no_memory")({f.top}).toTensor()
                                  : PrepareMemoryConditionedFeatures(obj, frame, reverse, f);
      const bool multimask = UseMultimask(is_init, pts);
      torch::Tensor coords, labels;
      if (pts) {
        coords = pts->coords.to(c.dtype);
        labels = pts->labels;
      } else {
        auto o = torch::TensorOptions().device(s_.device);
        coords = torch::zeros({1, 1, 1, 2}, o.dtype(c.dtype));
        labels = -torch::ones({1, 1, 1}, o.dtype(torch::kInt32));
      }
      out = RunTuple(multimask ? s_.decode_multi : s_.decode_single, {f.s0, f.s1, pix, coords, labels}, 4, "tracker decoder");
    }
    return {out[0], out[1], out[2].reshape({1, -1}), out[3].reshape({1, 1, 1})};
  }

  // _prepare_memory_conditioned_features for a tracked frame.
  torch::Tensor PrepareMemoryConditionedFeatures(ObjectState& obj, int64_t frame, bool reverse, const FrameFeatures& f) {
    const TrackerConfig& c = s_.config;
    if (obj.cond.items.empty()) {
      throw NativeError(code::kInvalidArgument, "object " + std::to_string(obj.id) + " has no prompt yet: add a prompt for it first");
    }
    const CondFrameSelection cond = SelectClosestCondFrames(obj.cond, frame, c.max_cond_frames);
    const MemoryFrames memory = GatherMemoryFrameOutputs(obj, cond, frame, reverse, c);
    const ObjectPointers ptrs = GetObjectPointers(obj, frame, reverse, v_.num_frames, c);
    torch::Tensor mem = torch::cat(memory.maskmem, 0);
    torch::Tensor mem_pos = torch::cat(memory.maskmem_pos, 0);
    torch::Tensor mem_off = torch::tensor(memory.offsets, torch::TensorOptions().dtype(torch::kLong)).to(s_.device);
    torch::Tensor p = ptrs.pointers.empty() ? torch::zeros({0, c.hidden}, torch::TensorOptions().dtype(c.dtype).device(s_.device))
                                            : torch::cat(ptrs.pointers, 0);
    torch::Tensor p_off = torch::tensor(ptrs.offsets, torch::TensorOptions().dtype(torch::kLong)).to(s_.device);
    // The first layer's self-attention reads only the frame's features: once per frame for all
    // its objects (the same computation on the same tensors, so the results are unchanged).
    if (!first_.defined() || first_frame_ != frame) {
      first_ = s_.mem_attn.get_method("first_self_attention")({f.top, f.top_pos}).toTensor();
      first_frame_ = frame;
    }
    return s_.mem_attn.forward({f.top, f.top_pos, mem, mem_pos, mem_off, p, p_off, ptrs.max_pointers, first_}).toTensor();
  }

  VideoState& v_;
  TrackerState& s_;
  torch::Tensor first_;  // first_self_attention of first_frame_
  int64_t first_frame_ = -1;
};

// Every object's low-res logits -> masks at the video size, RLE, boxes, sigmoid scores.
StepResult Outputs(const VideoState& v, int64_t frame, const std::vector<std::pair<torch::Tensor, torch::Tensor>>& per_obj) {
  StepResult out;
  out.frame = frame;
  out.height = v.height;
  out.width = v.width;
  for (size_t i = 0; i < per_obj.size(); i++) {
    out.ids.push_back(v.objects[i].id);
    TrackedMask m = PostProcessTrackedMask(per_obj[i].first, v.height, v.width);
    out.masks.push_back(std::move(m.rle));
    out.boxes.insert(out.boxes.end(), m.box.begin(), m.box.end());
    const float logit = per_obj[i].second.to(torch::kFloat32).to(torch::kCPU).item<float>();
    out.logits.push_back(logit);
    out.scores.push_back(1.0f / (1.0f + std::exp(-logit)));
  }
  out.memory_bytes = MemoryBytes(v);
  return out;
}

// obj_id_to_idx: the object with this id, made (as the last) when new.
ObjectState& ObjectFor(VideoState& v, int64_t id) {
  for (ObjectState& o : v.objects) {
    if (o.id == id) return o;
  }
  v.objects.push_back(ObjectState{});
  v.objects.back().id = id;
  return v.objects.back();
}

StepResult NeedFrame() {
  StepResult s;
  s.need_frame = true;
  return s;
}

}  // namespace

std::shared_ptr<TrackerState> LoadTracker(const TrackerConfig& c, const torch::Device& device, std::shared_ptr<ModelState> model) {
  auto state = std::make_shared<TrackerState>();
  state->config = c;
  state->model = std::move(model);
  state->device = device;
  auto t0 = std::chrono::steady_clock::now();
  LoadPieces(device, {
                         {state->neck, c.neck, "tracker's tracker neck"},
                         {state->decode_multi, c.decode_multi, "tracker's decoder"},
                         {state->decode_single, c.decode_single, "tracker's decoder"},
                         {state->mask_prompt, c.mask_prompt, "tracker's mask prompt"},
                         {state->mem_enc, c.mem_enc, "tracker's memory encoder"},
                         {state->mem_enc_points, c.mem_enc_points, "tracker's memory encoder"},
                         {state->mem_attn, c.mem_attn, "tracker's memory attention"},
                         {state->interactive_multi, c.interactive_multi, "tracker's interactive decoder"},
                         {state->interactive_single, c.interactive_single, "tracker's interactive decoder"},
                     });
  state->processor = MakeImageProcessor(device, c.resolution, c.mean, c.std, c.dtype);
  state->load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return state;
}

std::shared_ptr<VideoState> OpenVideo(const std::shared_ptr<TrackerState>& tracker, const VideoOptions& options) {
  auto v = std::make_shared<VideoState>();
  v->tracker = tracker;
  v->num_frames = options.num_frames;
  v->width = options.width;
  v->height = options.height;
  v->feature_cache_bytes = options.feature_cache_bytes;
  if (options.memory_window) v->memory_window = *options.memory_window;
  v->memory_window = std::max<int64_t>(v->memory_window, std::max(tracker->config.num_maskmem, tracker->config.max_pointers));
  return v;
}

PointInput MakePointInput(const std::vector<float>& xy, const std::vector<int32_t>& labels, int64_t resolution) {
  const int64_t n = static_cast<int64_t>(labels.size());
  torch::Tensor coords = torch::tensor(xy).view({1, 1, n, 2}) * static_cast<float>(resolution);
  return PointInput{coords, torch::tensor(labels, torch::TensorOptions().dtype(torch::kInt32)).view({1, 1, n})};
}

StepResult AddPrompts(VideoState& v, int64_t frame, const std::vector<PromptEntry>& entries, const torch::Tensor* rgb,
                      const torch::Tensor* vit) {
  Stepper stepper(v);
  const FrameFeatures* f = stepper.PrepareVisionFeatures(frame, rgb, vit);
  if (!f) return NeedFrame();
  const TrackerState& s = *v.tracker;
  std::vector<int64_t> ids;
  for (const PromptEntry& e : entries) {
    ObjectState& obj = ObjectFor(v, e.id);
    if (e.points) {
      obj.points[frame] = PointInput{e.points->coords.to(s.device), e.points->labels.to(s.device)};
      obj.masks.erase(frame);
    } else {
      // As Sam3TrackerVideoProcessor: resize to the model's size (antialiased bilinear), >= 0.5.
      torch::Tensor m = e.mask->to(s.device).to(torch::kFloat32).view({1, 1, v.height, v.width});
      const int64_t r = s.config.resolution;
      if (v.height != r || v.width != r) {
        m = F::interpolate(m, F::InterpolateFuncOptions().size(std::vector<int64_t>{r, r}).mode(torch::kBilinear).align_corners(false).antialias(true));
        m = (m >= 0.5).to(torch::kFloat32);
      }
      obj.masks[frame] = m;
      obj.points.erase(frame);
    }
    ids.push_back(e.id);
  }
  v.new_inputs = ids;
  return Outputs(v, frame, stepper.Forward(frame, false, *f));
}

const FrameFeatures* FrameFeaturesFor(VideoState& v, int64_t frame, const torch::Tensor* rgb, const torch::Tensor* vit) {
  return Stepper(v).PrepareVisionFeatures(frame, rgb, vit);
}

std::pair<torch::Tensor, torch::Tensor> TrackWithoutMemory(VideoState& v, int64_t frame, bool reverse, const FrameFeatures& f) {
  auto per_obj = Stepper(v).Forward(frame, reverse, f, /*encode_memory=*/false);
  std::vector<torch::Tensor> masks, scores;
  for (auto& [m, sc] : per_obj) {
    masks.push_back(m);
    scores.push_back(sc.reshape({1, 1}));
  }
  return {torch::cat(masks, 0), torch::cat(scores, 0)};
}

void EncodeFrameMemories(VideoState& v, int64_t frame, const FrameFeatures& f, const torch::Tensor& masks, const torch::Tensor& score_logits) {
  const int64_t n = masks.size(0);
  std::vector<size_t> objs;
  std::vector<torch::Tensor> m, sc;
  for (int64_t i = 0; i < n; i++) {
    objs.push_back(static_cast<size_t>(i));
    m.push_back(masks.narrow(0, i, 1));
    sc.push_back(score_logits.narrow(0, i, 1).reshape({1, 1, 1}));
  }
  if (!objs.empty()) Stepper(v).BatchEncodeMemories(frame, f, objs, m, sc, /*from_points=*/false);
}

void MakeConditioning(VideoState& v, size_t obj_idx, int64_t frame) {
  ObjectState& obj = v.objects.at(obj_idx);
  if (FrameOut* out = obj.non_cond.find(frame)) {
    FrameOut moved = std::move(*out);
    moved.reconditioned = true;
    obj.non_cond.erase(frame);
    obj.cond.put(frame, std::move(moved));
  }
}

void AddMaskObjects(VideoState& v, int64_t frame, bool reverse, const std::vector<int64_t>& ids, const torch::Tensor& masks, const FrameFeatures& f) {
  for (size_t i = 0; i < ids.size(); i++) {
    ObjectState& obj = ObjectFor(v, ids[i]);
    obj.masks[frame] = masks.narrow(0, static_cast<int64_t>(i), 1);
    obj.points.erase(frame);
  }
  v.new_inputs = ids;
  Stepper(v).Forward(frame, reverse, f);
}

StepResult PropagateStep(VideoState& v, int64_t frame, bool reverse, const torch::Tensor* rgb) {
  Stepper stepper(v);
  if (v.objects.empty()) throw NativeError(code::kInvalidArgument, "no objects to track: add a prompt first");
  const FrameFeatures* f = stepper.PrepareVisionFeatures(frame, rgb);
  if (!f) return NeedFrame();
  return Outputs(v, frame, stepper.Forward(frame, reverse, *f));
}

bool RemoveObject(VideoState& v, int64_t id) {
  auto& objs = v.objects;
  auto it = std::find_if(objs.begin(), objs.end(), [id](const ObjectState& o) { return o.id == id; });
  const bool found = it != objs.end();
  if (found) objs.erase(it);
  v.new_inputs.erase(std::remove(v.new_inputs.begin(), v.new_inputs.end(), id), v.new_inputs.end());
  return found;
}

void ResetTrackingData(VideoState& v) {
  v.objects.clear();
  v.new_inputs.clear();
}

int64_t MemoryBytes(const VideoState& v) {
  int64_t total = v.features_bytes + TensorBytes(v.maskmem_pos);
  for (const ObjectState& o : v.objects) {
    for (const auto* outs : {&o.cond, &o.non_cond}) {
      for (const auto& [t, out] : outs->items) total += TensorBytes(out.pred_masks) + TensorBytes(out.object_pointer) + TensorBytes(out.maskmem);
    }
    for (const auto& [t, m] : o.masks) total += TensorBytes(m);
  }
  return total;
}

}  // namespace sam3
