#include "video.h"

#include "addon.h"

#include <chrono>
#include <cmath>
#include <set>

#include "preprocess.h"
#include "rle.h"

namespace sam3 {
namespace {

namespace F = torch::nn::functional;

std::string Str(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) ThrowInvalid(o.Env(), std::string("tracker option '") + key + "' must be a string");
  return v.As<Napi::String>();
}

int64_t Int(const Napi::Object& o, const char* key, int64_t min_value) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) ThrowInvalid(o.Env(), std::string("option '") + key + "' must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(min_value) || d > 1e12) {
    ThrowInvalid(o.Env(), std::string("option '") + key + "' must be an integer >= " + std::to_string(min_value));
  }
  return static_cast<int64_t>(d);
}

bool Bool(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsBoolean()) ThrowInvalid(o.Env(), std::string("tracker option '") + key + "' must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::array<float, 3> Triple(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) ThrowInvalid(o.Env(), std::string("tracker option '") + key + "' must be 3 numbers");
  std::array<float, 3> out{};
  for (uint32_t i = 0; i < 3; i++) out[i] = v.As<Napi::Array>().Get(i).ToNumber().FloatValue();
  return out;
}

torch::jit::Module LoadModule(const std::string& path, const torch::Device& device, const char* what) {
  try {
    torch::jit::Module m = torch::jit::load(path, device);
    m.eval();
    return m;
  } catch (...) {
    throw CurrentError(code::kModelLoad, std::string("cannot load the tracker's ") + what + " from " + path);
  }
}

std::vector<torch::Tensor> Tuple(const torch::jit::IValue& out, size_t expected, const char* what) {
  std::vector<torch::Tensor> t;
  if (out.isTuple()) {
    for (const auto& e : out.toTupleRef().elements()) t.push_back(e.toTensor());
  } else if (out.isTensor()) {
    t.push_back(out.toTensor());
  }
  if (t.size() != expected) {
    throw NativeError(code::kModelLoad, std::string(what) + " returned " + std::to_string(t.size()) + " outputs, expected " +
                                            std::to_string(expected) + ": the bundle does not match this server");
  }
  return t;
}

int64_t Bytes(const torch::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

torch::Tensor Preprocess(const TrackerState& s, const torch::Tensor& hwc) {
  return PreprocessRgb(hwc, s.device, s.config.resolution, s.mean, s.std, s.config.dtype);
}

struct SingleOut {
  torch::Tensor low_res, high_res, pointer, score;  // [1,1,m,m], [1,1,R,R], [1,C], [1,1,1]
};

class Stepper {
 public:
  Stepper(VideoState& v) : v_(v), s_(*v.tracker) {}

  // The vision features of a frame: cached, or computed from the frame's ViT output (given by a
  // detector pass over the same frame) or from rgb (nullptr and no ViT output -> not available).
  const FrameFeatures* Features(int64_t frame, const torch::Tensor* rgb, const torch::Tensor* vit = nullptr) {
    auto it = v_.features.find(frame);
    if (it != v_.features.end()) {
      Touch(frame);
      return &it->second;
    }
    if (!rgb && !vit) return nullptr;
    torch::Tensor hidden = vit ? *vit : RunBackbone(*s_.model, Preprocess(s_, *rgb));
    auto out = Tuple(s_.neck.forward({hidden}), 4, "tracker neck");
    FrameFeatures f{out[0], out[1], out[2], out[3], 0};
    f.bytes = Bytes(f.s0) + Bytes(f.s1) + Bytes(f.top) + Bytes(f.top_pos);
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

  // transformers' Sam3TrackerVideoModel.forward(session, frame_idx, reverse) for all objects.
  std::vector<std::pair<torch::Tensor, torch::Tensor>> Forward(int64_t frame, bool reverse, const FrameFeatures& f) {
    const size_t n = v_.objects.size();
    std::vector<std::pair<torch::Tensor, torch::Tensor>> result(n);  // (low-res masks, score logit)
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
          is_init = !obj.tracked.count(frame);
          if (is_init) reverse = false;  // as transformers does (it also affects later objects)
          auto pit = obj.points.find(frame);
          if (pit != obj.points.end()) pts = &pit->second;
          auto mit = obj.masks.find(frame);
          if (mit != obj.masks.end()) mask = &mit->second;
          if (pts || mask) v_.new_inputs.erase(std::find(v_.new_inputs.begin(), v_.new_inputs.end(), obj.id));
        }
        SingleOut out = RunSingle(obj, frame, is_init, pts, mask, reverse, f);
        FrameOut stored;
        stored.pred_masks = out.low_res;
        stored.object_pointer = out.pointer;
        stored.score_logit = out.score;
        (is_init ? obj.cond : obj.non_cond).put(frame, std::move(stored));
        result[i] = {out.low_res, out.score};
        if (s_.config.num_maskmem > 0) {
          enc_objs.push_back(i);
          enc_masks.push_back(out.high_res);
          enc_scores.push_back(out.score);
          enc_from_points = enc_from_points || pts || mask;
        }
      }
      if (!is_init) obj.tracked[frame] = reverse;
    }
    if (!enc_objs.empty()) {
      const int64_t b = static_cast<int64_t>(enc_objs.size());
      // One module for all the frame's objects (transformers: any object's mask from its prompt).
      torch::jit::Module& enc = enc_from_points ? s_.mem_enc_points : s_.mem_enc;
      // Every row of the encoder is independent of the others. A GPU runs all objects in one pass;
      // a CPU one object a pass, which gives the same bits faster (bench model, 4 objects: 310-370
      // ms batched against 220-260 ms one by one).
      const int64_t chunk = s_.device.is_cpu() ? 1 : b;
      for (int64_t start = 0; start < b; start += chunk) {
        const int64_t n = std::min(chunk, b - start);
        std::vector<torch::Tensor> masks(enc_masks.begin() + start, enc_masks.begin() + start + n);
        std::vector<torch::Tensor> scores(enc_scores.begin() + start, enc_scores.begin() + start + n);
        auto out = Tuple(enc.forward({f.top.expand({n, -1, -1, -1}), torch::cat(masks, 0), torch::cat(scores, 0)}), 2, "memory encoder");
        if (!v_.maskmem_pos.defined()) v_.maskmem_pos = out[1].narrow(0, 0, 1).clone();
        for (int64_t j = 0; j < n; j++) {
          ObjectState& obj = v_.objects[enc_objs[start + j]];
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
    Prune(frame);
    return result;
  }

 private:
  void Touch(int64_t frame) {
    auto it = std::find(v_.feature_lru.begin(), v_.feature_lru.end(), frame);
    if (it != v_.feature_lru.end() && std::next(it) != v_.feature_lru.end()) {
      v_.feature_lru.erase(it);
      v_.feature_lru.push_back(frame);
    }
  }

  // Tracked (non-conditioning) outputs are only read within max(num_maskmem, max_pointers) frames
  // of the frame being tracked; keep those around the current front and around every prompted
  // frame (where a propagation in the other direction starts) and drop the rest, so an object's
  // memory bank stays bounded however long the video.
  void Prune(int64_t frame) {
    const int64_t w = v_.memory_window;
    for (ObjectState& obj : v_.objects) {
      std::vector<int64_t> drop;
      for (int64_t t : obj.non_cond.order) {
        if (std::llabs(t - frame) <= w) continue;
        bool near_cond = false;
        for (int64_t c : obj.cond.order) near_cond = near_cond || std::llabs(t - c) <= w;
        if (!near_cond) drop.push_back(t);
      }
      for (int64_t t : drop) obj.non_cond.erase(t);
      // Low-res masks of tracked frames are never read again.
      for (auto& [t, out] : obj.non_cond.items) out.pred_masks = torch::Tensor();
    }
  }

  SingleOut RunSingle(ObjectState& obj, int64_t frame, bool is_init, const PointInput* pts, const torch::Tensor* mask, bool reverse,
                      const FrameFeatures& f) {
    const TrackerConfig& c = s_.config;
    std::vector<torch::Tensor> out;
    if (mask) {
      out = Tuple(s_.mask_prompt.forward({f.s0, f.s1, f.top, mask->to(c.dtype)}), 4, "tracker mask prompt");
    } else {
      torch::Tensor pix = is_init ? s_.mem_attn.get_method("no_memory")({f.top}).toTensor() : Conditioned(obj, frame, reverse, f);
      const int64_t npts = pts ? pts->labels.size(2) : 0;
      const bool multimask =
          c.multimask_in_sam && (is_init || c.multimask_for_tracking) && c.multimask_min_pts <= npts && npts <= c.multimask_max_pts;
      torch::Tensor coords, labels;
      if (pts) {
        coords = pts->coords.to(c.dtype);
        labels = pts->labels;
      } else {
        auto o = torch::TensorOptions().device(s_.device);
        coords = torch::zeros({1, 1, 1, 2}, o.dtype(c.dtype));
        labels = -torch::ones({1, 1, 1}, o.dtype(torch::kInt32));
      }
      out = Tuple((multimask ? s_.decode_multi : s_.decode_single).forward({f.s0, f.s1, pix, coords, labels}), 4, "tracker decoder");
    }
    return {out[0], out[1], out[2].reshape({1, -1}), out[3].reshape({1, 1, 1})};
  }

  // _prepare_memory_conditioned_features for a tracked frame.
  torch::Tensor Conditioned(ObjectState& obj, int64_t frame, bool reverse, const FrameFeatures& f) {
    const TrackerConfig& c = s_.config;
    if (obj.cond.items.empty()) {
      throw NativeError(code::kInvalidArgument, "object " + std::to_string(obj.id) + " has no prompt yet: add a prompt for it first");
    }
    // Conditioning frames: all of them, or the closest max_cond_frames (before, after, nearest).
    std::vector<int64_t> selected;
    std::set<int64_t> unselected;
    const auto& order = obj.cond.order;
    if (c.max_cond_frames == -1 || static_cast<int64_t>(order.size()) <= c.max_cond_frames) {
      selected = order;
    } else {
      std::optional<int64_t> before, after;
      for (int64_t t : order) {
        if (t < frame && (!before || t > *before)) before = t;
        if (t >= frame && (!after || t < *after)) after = t;
      }
      if (before) selected.push_back(*before);
      if (after && (!before || *after != *before)) selected.push_back(*after);
      std::vector<int64_t> rest;
      for (int64_t t : order) {
        if (std::find(selected.begin(), selected.end(), t) == selected.end()) rest.push_back(t);
      }
      std::stable_sort(rest.begin(), rest.end(), [frame](int64_t a, int64_t b) { return std::llabs(a - frame) < std::llabs(b - frame); });
      const int64_t remain = c.max_cond_frames - static_cast<int64_t>(selected.size());
      for (int64_t i = 0; i < static_cast<int64_t>(rest.size()); i++) {
        if (i < remain) selected.push_back(rest[i]);
        else unselected.insert(rest[i]);
      }
    }
    std::vector<torch::Tensor> mems, poss;
    std::vector<int64_t> offsets;
    auto add = [&](const FrameOut* o, int64_t offset) {
      if (!o || !o->maskmem.defined()) return;
      mems.push_back(o->maskmem);
      poss.push_back(o->maskmem_pos);
      offsets.push_back(offset);
    };
    for (int64_t t : selected) add(obj.cond.find(t), 0);
    for (int64_t off = c.num_maskmem - 1; off >= 1; off--) {
      const int64_t prev = reverse ? frame + off : frame - off;
      const FrameOut* o = obj.non_cond.find(prev);
      if (!o && unselected.count(prev)) o = obj.cond.find(prev);
      add(o, off);
    }
    // Object pointers: conditioning frames not after (before, in reverse) this one, then the
    // tracked frames just before it.
    const int64_t sign = reverse ? -1 : 1;
    const int64_t max_ptr = std::min<int64_t>(v_.num_frames, c.max_pointers);
    std::vector<torch::Tensor> ptrs;
    std::vector<int64_t> ptr_offsets;
    for (int64_t t : order) {
      if (reverse ? t >= frame : t <= frame) {
        ptrs.push_back(obj.cond.find(t)->object_pointer);
        ptr_offsets.push_back((frame - t) * sign);
      }
    }
    for (int64_t d = 1; d < max_ptr; d++) {
      const int64_t ref = reverse ? frame + d : frame - d;
      if (ref < 0 || ref >= v_.num_frames) break;
      const FrameOut* o = obj.non_cond.find(ref);
      if (o) {
        ptrs.push_back(o->object_pointer);
        ptr_offsets.push_back(d);
      }
    }
    torch::Tensor mem = torch::cat(mems, 0);
    torch::Tensor mem_pos = torch::cat(poss, 0);
    torch::Tensor mem_off = torch::tensor(offsets, torch::TensorOptions().dtype(torch::kLong)).to(s_.device);
    torch::Tensor p = ptrs.empty() ? torch::zeros({0, c.hidden}, torch::TensorOptions().dtype(c.dtype).device(s_.device)) : torch::cat(ptrs, 0);
    torch::Tensor p_off = torch::tensor(ptr_offsets, torch::TensorOptions().dtype(torch::kLong))
                              .to(s_.device);
    // The first layer's self-attention reads only the frame's features: once per frame for all
    // its objects (the same computation on the same tensors, so the results are unchanged).
    if (!first_.defined() || first_frame_ != frame) {
      first_ = s_.mem_attn.get_method("first_self_attention")({f.top, f.top_pos}).toTensor();
      first_frame_ = frame;
    }
    return s_.mem_attn.forward({f.top, f.top_pos, mem, mem_pos, mem_off, p, p_off, max_ptr, first_}).toTensor();
  }

  VideoState& v_;
  torch::Tensor first_;  // first_self_attention of first_frame_
  int64_t first_frame_ = -1;
  TrackerState& s_;
};

struct StepOut {
  bool need_frame = false;
  int64_t frame = 0;
  std::vector<int64_t> ids;
  std::vector<std::string> masks;
  std::vector<float> boxes, scores, logits;
  int64_t memory_bytes = 0;
  int64_t height = 0, width = 0;
};

int64_t MemoryBytes(const VideoState& v) {
  int64_t total = v.features_bytes + Bytes(v.maskmem_pos);
  for (const ObjectState& o : v.objects) {
    for (const auto* outs : {&o.cond, &o.non_cond}) {
      for (const auto& [t, out] : outs->items) total += Bytes(out.pred_masks) + Bytes(out.object_pointer) + Bytes(out.maskmem);
    }
    for (const auto& [t, m] : o.masks) total += Bytes(m);
  }
  return total;
}

// Low-res logits of every object -> masks at the video size (bilinear, > 0, as
// Sam3TrackerVideoProcessor.post_process_masks), RLE, boxes from the masks, sigmoid scores.
StepOut Outputs(const VideoState& v, int64_t frame, const std::vector<std::pair<torch::Tensor, torch::Tensor>>& per_obj) {
  StepOut out;
  out.frame = frame;
  out.height = v.height;
  out.width = v.width;
  for (size_t i = 0; i < per_obj.size(); i++) {
    out.ids.push_back(v.objects[i].id);
    torch::Tensor up = F::interpolate(per_obj[i].first.to(torch::kFloat32),
                                      F::InterpolateFuncOptions().size(std::vector<int64_t>{v.height, v.width}).mode(torch::kBilinear).align_corners(false));
    torch::Tensor bin = (up[0][0] > 0).to(torch::kUInt8).to(torch::kCPU).contiguous();
    out.masks.push_back(RleEncodeRowMajor(bin.data_ptr<uint8_t>(), v.height, v.width));
    torch::Tensor rows = bin.any(1).nonzero();
    torch::Tensor cols = bin.any(0).nonzero();
    if (rows.numel() == 0) {
      out.boxes.insert(out.boxes.end(), {0.f, 0.f, 0.f, 0.f});
    } else {
      const float y0 = rows.min().item<int64_t>(), y1 = rows.max().item<int64_t>() + 1;
      const float x0 = cols.min().item<int64_t>(), x1 = cols.max().item<int64_t>() + 1;
      out.boxes.insert(out.boxes.end(), {x0 / v.width, y0 / v.height, (x1 - x0) / v.width, (y1 - y0) / v.height});
    }
    const float logit = per_obj[i].second.to(torch::kFloat32).to(torch::kCPU).item<float>();
    out.logits.push_back(logit);
    out.scores.push_back(1.0f / (1.0f + std::exp(-logit)));
  }
  out.memory_bytes = MemoryBytes(v);
  return out;
}

Napi::Value StepToJs(Napi::Env env, const StepOut& s) {
  Napi::Object o = Napi::Object::New(env);
  if (s.need_frame) {
    o.Set("needFrame", true);
    return o;
  }
  o.Set("frame", static_cast<double>(s.frame));
  Napi::Array ids = Napi::Array::New(env, s.ids.size());
  Napi::Array masks = Napi::Array::New(env, s.masks.size());
  for (size_t i = 0; i < s.ids.size(); i++) {
    ids.Set(static_cast<uint32_t>(i), static_cast<double>(s.ids[i]));
    masks.Set(static_cast<uint32_t>(i), AsciiString(env, s.masks[i]));
  }
  auto f32 = [&](const std::vector<float>& v) {
    auto a = Napi::Float32Array::New(env, v.size());
    std::copy(v.begin(), v.end(), a.Data());
    return a;
  };
  o.Set("objIds", ids);
  o.Set("masks", masks);
  o.Set("boxes", f32(s.boxes));
  o.Set("scores", f32(s.scores));
  o.Set("logits", f32(s.logits));
  o.Set("memoryBytes", static_cast<double>(s.memory_bytes));
  o.Set("height", static_cast<double>(s.height));
  o.Set("width", static_cast<double>(s.width));
  return o;
}

// Optional {data, width, height} RGB frame -> a CPU HWC uint8 tensor (copied now).
std::optional<torch::Tensor> ReadFrame(Napi::Env env, const Napi::Value& v, const VideoState& video) {
  if (v.IsUndefined() || v.IsNull()) return std::nullopt;
  if (!v.IsObject()) ThrowInvalid(env, "frame must be {data, width, height} or null");
  Napi::Object o = v.As<Napi::Object>();
  Napi::Value data = o.Get("data");
  if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) ThrowInvalid(env, "frame.data must be a Uint8Array of RGB bytes");
  const int64_t w = Int(o, "width", 1), h = Int(o, "height", 1);
  auto u8 = data.As<Napi::Uint8Array>();
  if (static_cast<int64_t>(u8.ByteLength()) != w * h * 3) ThrowInvalid(env, "frame.data has the wrong length for width*height*3");
  if (w != video.width || h != video.height) {
    ThrowInvalid(env, "frame is " + std::to_string(w) + "x" + std::to_string(h) + " but the video is " + std::to_string(video.width) + "x" +
                          std::to_string(video.height));
  }
  torch::Tensor t = torch::empty({h, w, 3}, torch::TensorOptions().dtype(torch::kUInt8));
  std::memcpy(t.data_ptr<uint8_t>(), u8.Data(), static_cast<size_t>(w * h * 3));
  return t;
}

int64_t FrameArg(Napi::Env env, const Napi::Value& v, const VideoState& video) {
  if (!v.IsNumber()) ThrowInvalid(env, "frame index must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (d != std::floor(d) || d < 0 || d >= static_cast<double>(video.num_frames)) {
    ThrowInvalid(env, "frame index " + std::to_string(d) + " is outside [0, " + std::to_string(video.num_frames - 1) + "]");
  }
  return static_cast<int64_t>(d);
}

ObjectState& ObjectFor(VideoState& v, int64_t id) {
  for (ObjectState& o : v.objects) {
    if (o.id == id) return o;
  }
  v.objects.push_back(ObjectState{});
  v.objects.back().id = id;
  return v.objects.back();
}

}  // namespace

// ---------------------------------------------------------------------------------------------

Napi::Function Tracker::Init(Napi::Env env) {
  return DefineClass(env, "Tracker",
                     {
                         InstanceMethod<&Tracker::Open>("open"),
                         InstanceMethod<&Tracker::Prompt>("prompt"),
                         InstanceMethod<&Tracker::Step>("step"),
                         InstanceMethod<&Tracker::RemoveObject>("removeObject"),
                         InstanceMethod<&Tracker::Reset>("reset"),
                         InstanceMethod<&Tracker::Dispose>("dispose"),
                     });
}

Napi::Function VideoHandle::Init(Napi::Env env) {
  return DefineClass(env, kClassName, CommonProperties());
}

Tracker::Tracker(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tracker>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 3 || !info[0].IsExternal() || !info[1].IsExternal() || !info[2].IsObject()) {
    ThrowInvalid(env, "Tracker cannot be constructed directly: use engine.loadTracker()");
  }
  state_ = *info[0].As<Napi::External<std::shared_ptr<TrackerState>>>().Data();
  core_ = *info[1].As<Napi::External<std::shared_ptr<EngineCore>>>().Data();
  engine_ = Napi::Persistent(info[2].As<Napi::Object>());
}

Napi::Value Tracker::Load(const Napi::CallbackInfo& info, std::shared_ptr<EngineCore> core) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowInvalid(env, "loadTracker(options): options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  TrackerConfig c;
  auto model = Model::StateOf(o.Get("model"), "loadTracker: model");
  if (model->device != core->device()) ThrowInvalid(env, "loadTracker: the model runs on another device than this engine");
  c.neck = Str(o, "neck");
  c.decode_multi = Str(o, "decodeMulti");
  c.decode_single = Str(o, "decodeSingle");
  c.mask_prompt = Str(o, "maskPrompt");
  c.mem_enc = Str(o, "memoryEncoder");
  c.mem_enc_points = Str(o, "memoryEncoderPoints");
  c.mem_attn = Str(o, "memoryAttention");
  const std::string dtype = Str(o, "dtype");
  c.dtype = dtype == "bfloat16" ? torch::kBFloat16 : dtype == "float16" ? torch::kFloat16 : torch::kFloat32;
  c.resolution = Int(o, "resolution", 1);
  c.low_res = Int(o, "lowResMaskSize", 1);
  c.hidden = Int(o, "hiddenSize", 1);
  c.num_maskmem = Int(o, "numMaskmem", 0);
  c.max_cond_frames = Int(o, "maxCondFrames", -1);
  c.max_pointers = Int(o, "maxObjectPointers", 1);
  c.multimask_in_sam = Bool(o, "multimaskOutputInSam");
  c.multimask_min_pts = Int(o, "multimaskMinPoints", 0);
  c.multimask_max_pts = Int(o, "multimaskMaxPoints", 0);
  c.multimask_for_tracking = Bool(o, "multimaskOutputForTracking");
  c.mean = Triple(o, "mean");
  c.std = Triple(o, "std");
  const torch::Device device = core->device();
  Work work = [c, device, core, model]() -> Finisher {
    auto state = std::make_shared<TrackerState>();
    state->config = c;
    state->model = model;
    state->device = device;
    auto t0 = std::chrono::steady_clock::now();
    state->neck = LoadModule(c.neck, device, "tracker neck");
    state->decode_multi = LoadModule(c.decode_multi, device, "decoder");
    state->decode_single = LoadModule(c.decode_single, device, "decoder");
    state->mask_prompt = LoadModule(c.mask_prompt, device, "mask prompt");
    state->mem_enc = LoadModule(c.mem_enc, device, "memory encoder");
    state->mem_enc_points = LoadModule(c.mem_enc_points, device, "memory encoder");
    state->mem_attn = LoadModule(c.mem_attn, device, "memory attention");
    auto fopts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
    state->mean = torch::tensor(std::vector<float>(c.mean.begin(), c.mean.end()), fopts).view({1, 3, 1, 1});
    state->std = torch::tensor(std::vector<float>(c.std.begin(), c.std.end()), fopts).view({1, 3, 1, 1});
    state->load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return [state, core](Napi::Env env, Napi::Object engine) -> Napi::Value {
      auto* data = AddonData::Get(env);
      return data->tracker_ctor.New({
          Napi::External<std::shared_ptr<TrackerState>>::New(env, new std::shared_ptr<TrackerState>(state),
                                                             [](Napi::Env, std::shared_ptr<TrackerState>* p) { delete p; }),
          Napi::External<std::shared_ptr<EngineCore>>::New(env, new std::shared_ptr<EngineCore>(core),
                                                           [](Napi::Env, std::shared_ptr<EngineCore>* p) { delete p; }),
          engine,
      });
    };
  };
  return core->Submit(env, std::move(work), "loadTracker", info.This().As<Napi::Object>());
}

std::shared_ptr<TrackerState> Tracker::Live(Napi::Env env, const char* op) {
  if (!state_) throw MakeJsError(env, code::kDisposed, std::string(op) + ": the tracker has been disposed");
  return state_;
}

Napi::Value Tracker::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "open");
  if (info.Length() < 1 || !info[0].IsObject()) ThrowInvalid(env, "open({numFrames, width, height, featureCacheBytes})");
  Napi::Object o = info[0].As<Napi::Object>();
  auto v = std::make_shared<VideoState>();
  v->tracker = state;
  v->num_frames = Int(o, "numFrames", 1);
  v->width = Int(o, "width", 1);
  v->height = Int(o, "height", 1);
  v->feature_cache_bytes = Int(o, "featureCacheBytes", 0);
  if (o.Get("memoryWindow").IsNumber()) v->memory_window = Int(o, "memoryWindow", 1);
  v->memory_window = std::max<int64_t>(v->memory_window, std::max(state->config.num_maskmem, state->config.max_pointers));
  return VideoHandle::Wrap(env, v);
}

Napi::Value Tracker::Prompt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "prompt");
  if (info.Length() < 3 || !info[2].IsArray()) ThrowInvalid(env, "prompt(video, frame, entries: Array<{objId, points?, labels?, mask?}>, rgb?, features?)");
  auto video = VideoHandle::Get(info[0], "prompt(video, ...)");
  if (video->tracker != state) ThrowInvalid(env, "prompt: this video session belongs to another tracker");
  const int64_t frame = FrameArg(env, info[1], *video);
  struct Entry {
    int64_t id;
    std::optional<PointInput> points;
    std::optional<torch::Tensor> mask;
  };
  std::vector<Entry> entries;
  Napi::Array arr = info[2].As<Napi::Array>();
  if (arr.Length() == 0) ThrowInvalid(env, "prompt: at least one entry is required");
  const TrackerConfig& c = state->config;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    if (!arr.Get(i).IsObject()) ThrowInvalid(env, "prompt: every entry must be an object");
    Napi::Object e = arr.Get(i).As<Napi::Object>();
    Entry entry{Int(e, "objId", 0), std::nullopt, std::nullopt};
    Napi::Value pv = e.Get("points"), mv = e.Get("mask");
    if (pv.IsTypedArray()) {
      if (pv.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) ThrowInvalid(env, "prompt: points must be a Float64Array");
      auto p = pv.As<Napi::Float64Array>();
      Napi::Value lv = e.Get("labels");
      if (!lv.IsTypedArray() || lv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) ThrowInvalid(env, "prompt: labels must be an Int32Array");
      auto l = lv.As<Napi::Int32Array>();
      const size_t n = l.ElementLength();
      if (n == 0 || p.ElementLength() != 2 * n) ThrowInvalid(env, "prompt: points must hold 2 numbers per label");
      std::vector<float> xy(2 * n);
      std::vector<int32_t> lab(n);
      for (size_t j = 0; j < 2 * n; j++) {
        if (!std::isfinite(p[j])) ThrowInvalid(env, "prompt: point coordinates must be finite");
        xy[j] = static_cast<float>(p[j]);
      }
      for (size_t j = 0; j < n; j++) lab[j] = l[j];
      // float32(normalised) * resolution, in float32, like the reference.
      torch::Tensor coords = torch::tensor(xy).view({1, 1, static_cast<int64_t>(n), 2}) * static_cast<float>(c.resolution);
      entry.points = PointInput{coords, torch::tensor(lab, torch::TensorOptions().dtype(torch::kInt32)).view({1, 1, static_cast<int64_t>(n)})};
    } else if (mv.IsTypedArray()) {
      if (mv.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) ThrowInvalid(env, "prompt: mask must be a Uint8Array");
      auto m = mv.As<Napi::Uint8Array>();
      if (static_cast<int64_t>(m.ByteLength()) != video->width * video->height) ThrowInvalid(env, "prompt: mask must hold width*height bytes");
      torch::Tensor t = torch::empty({video->height, video->width}, torch::TensorOptions().dtype(torch::kUInt8));
      std::memcpy(t.data_ptr<uint8_t>(), m.Data(), m.ByteLength());
      entry.mask = t;
    } else {
      ThrowInvalid(env, "prompt: every entry needs points+labels or a mask");
    }
    entries.push_back(std::move(entry));
  }
  std::optional<torch::Tensor> rgb = ReadFrame(env, info.Length() > 3 ? info[3] : env.Undefined(), *video);
  // The frame's image features from a detector pass (a text prompt): their ViT output saves running
  // the ViT again for the tracker.
  std::optional<torch::Tensor> vit;
  if (info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull()) {
    auto feats = ImageFeatures::Get(info[4], "prompt(..., features)");
    if (feats->owner != state->model.get()) ThrowInvalid(env, "prompt: the features come from another model");
    if (!feats->backbone.defined()) ThrowInvalid(env, "prompt: the features were encoded without keepBackbone");
    if (feats->width != video->width || feats->height != video->height) ThrowInvalid(env, "prompt: the features are of an image of another size than the video");
    vit = feats->backbone;
  }
  Work work = [state, video, frame, entries = std::move(entries), rgb, vit]() -> Finisher {
    Stepper stepper(*video);
    const FrameFeatures* f = stepper.Features(frame, rgb ? &*rgb : nullptr, vit ? &*vit : nullptr);
    if (!f) {
      return [](Napi::Env env, Napi::Object) -> Napi::Value {
        StepOut s;
        s.need_frame = true;
        return StepToJs(env, s);
      };
    }
    const TrackerState& s = *state;
    std::vector<int64_t> ids;
    for (const Entry& e : entries) {
      ObjectState& obj = ObjectFor(*video, e.id);
      if (e.points) {
        obj.points[frame] = PointInput{e.points->coords.to(s.device), e.points->labels.to(s.device)};
        obj.masks.erase(frame);
      } else {
        // As Sam3TrackerVideoProcessor: resize to the model's size (antialiased bilinear), >= 0.5.
        torch::Tensor m = e.mask->to(s.device).to(torch::kFloat32).view({1, 1, video->height, video->width});
        const int64_t r = s.config.resolution;
        if (video->height != r || video->width != r) {
          m = F::interpolate(m, F::InterpolateFuncOptions().size(std::vector<int64_t>{r, r}).mode(torch::kBilinear).align_corners(false).antialias(true));
          m = (m >= 0.5).to(torch::kFloat32);
        }
        obj.masks[frame] = m;
        obj.points.erase(frame);
      }
      ids.push_back(e.id);
    }
    video->new_inputs = ids;
    auto per_obj = stepper.Forward(frame, false, *f);
    StepOut out = Outputs(*video, frame, per_obj);
    return [out](Napi::Env env, Napi::Object) -> Napi::Value { return StepToJs(env, out); };
  };
  return core_->Submit(env, std::move(work), "videoPrompt");
}

Napi::Value Tracker::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "step");
  if (info.Length() < 3 || !info[2].IsBoolean()) ThrowInvalid(env, "step(video, frame, reverse: boolean, rgb?)");
  auto video = VideoHandle::Get(info[0], "step(video, ...)");
  if (video->tracker != state) ThrowInvalid(env, "step: this video session belongs to another tracker");
  const int64_t frame = FrameArg(env, info[1], *video);
  const bool reverse = info[2].As<Napi::Boolean>().Value();
  std::optional<torch::Tensor> rgb = ReadFrame(env, info.Length() > 3 ? info[3] : env.Undefined(), *video);
  Work work = [video, frame, reverse, rgb]() -> Finisher {
    Stepper stepper(*video);
    if (video->objects.empty()) throw NativeError(code::kInvalidArgument, "no objects to track: add a prompt first");
    const FrameFeatures* f = stepper.Features(frame, rgb ? &*rgb : nullptr);
    StepOut out;
    if (!f) {
      out.need_frame = true;
    } else {
      out = Outputs(*video, frame, stepper.Forward(frame, reverse, *f));
    }
    return [out](Napi::Env env, Napi::Object) -> Napi::Value { return StepToJs(env, out); };
  };
  return core_->Submit(env, std::move(work), "videoStep");
}

Napi::Value Tracker::RemoveObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Live(env, "removeObject");
  auto video = VideoHandle::Get(info[0], "removeObject(video, objId)");
  if (info.Length() < 2 || !info[1].IsNumber()) ThrowInvalid(env, "removeObject(video, objId: number)");
  const int64_t id = info[1].As<Napi::Number>().Int64Value();
  Work work = [video, id]() -> Finisher {
    auto& objs = video->objects;
    auto it = std::find_if(objs.begin(), objs.end(), [id](const ObjectState& o) { return o.id == id; });
    const bool found = it != objs.end();
    if (found) objs.erase(it);
    video->new_inputs.erase(std::remove(video->new_inputs.begin(), video->new_inputs.end(), id), video->new_inputs.end());
    const int64_t mem = MemoryBytes(*video);
    return [found, mem](Napi::Env env, Napi::Object) -> Napi::Value {
      Napi::Object o = Napi::Object::New(env);
      o.Set("removed", found);
      o.Set("memoryBytes", static_cast<double>(mem));
      return o;
    };
  };
  return core_->Submit(env, std::move(work), "videoRemoveObject");
}

Napi::Value Tracker::Reset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Live(env, "reset");
  auto video = VideoHandle::Get(info[0], "reset(video)");
  Work work = [video]() -> Finisher {
    // Like reset_tracking_data: objects, prompts and memories go; cached frame features stay.
    video->objects.clear();
    video->new_inputs.clear();
    const int64_t mem = MemoryBytes(*video);
    return [mem](Napi::Env env, Napi::Object) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(mem)); };
  };
  return core_->Submit(env, std::move(work), "videoReset");
}

Napi::Value Tracker::Dispose(const Napi::CallbackInfo& info) {
  state_.reset();
  return info.Env().Undefined();
}

}  // namespace sam3
