// SAM 3 video tracker: the tracker pieces of a bundle (Tracker) and per-video tracking state
// (VideoState, wrapped by the VideoHandle JS class). The per-frame step mirrors transformers'
// Sam3TrackerVideoModel.forward: per-object memory bank of conditioning frames (prompted) and
// tracked frames, object pointers, occlusion scores, forward and reverse tracking.
//
// All tracking work runs on the engine thread (FIFO), so a session's state is only ever touched by
// one thread; the JS side only holds a handle.
#pragma once

#include <napi.h>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "addon.h"
#include "engine.h"
#include "errors.h"
#include "model.h"

namespace sam3 {

struct TrackerConfig {
  std::string neck, decode_multi, decode_single, mask_prompt, mem_enc, mem_enc_points, mem_attn;
  torch::ScalarType dtype = torch::kFloat32;
  int64_t resolution = 0;
  int64_t low_res = 0;  // low-resolution mask size (4g)
  int64_t hidden = 0;
  int64_t num_maskmem = 7;
  int64_t max_cond_frames = 4;
  int64_t max_pointers = 16;
  bool multimask_in_sam = true;
  int64_t multimask_min_pts = 0;
  int64_t multimask_max_pts = 1;
  bool multimask_for_tracking = true;
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
};

struct TrackerState {
  TrackerConfig config;
  torch::Device device{torch::kCPU};
  std::shared_ptr<ModelState> model;  // its ViT (vision_backbone) gives the tracker neck its input
  torch::jit::Module neck, decode_multi, decode_single, mask_prompt, mem_enc, mem_enc_points, mem_attn;
  torch::Tensor mean, std;
  double load_ms = 0;
};

// The vision features of one frame (batch 1, on the device).
struct FrameFeatures {
  torch::Tensor s0, s1, top, top_pos;
  int64_t bytes = 0;
};

// What one object keeps of one frame (transformers' output_dict_per_obj entry).
struct FrameOut {
  torch::Tensor pred_masks;      // [1,1,m,m] low-res logits (kept for conditioning frames only)
  torch::Tensor object_pointer;  // [1,C]
  torch::Tensor score_logit;     // [1,1,1]
  torch::Tensor maskmem;         // [1,64,g,g] bfloat16 (undefined until encoded)
  torch::Tensor maskmem_pos;     // [1,64,g,g] (shared between frames: it depends on the shape only)
};

// An insertion-ordered map of frame -> output (a Python dict keeps insertion order, and the order
// of conditioning frames decides the order of memories, as in transformers).
struct OrderedOuts {
  std::vector<int64_t> order;
  std::map<int64_t, FrameOut> items;
  FrameOut* find(int64_t f) {
    auto it = items.find(f);
    return it == items.end() ? nullptr : &it->second;
  }
  void put(int64_t f, FrameOut v) {
    if (!items.count(f)) order.push_back(f);
    items[f] = std::move(v);
  }
  void erase(int64_t f) {
    if (items.erase(f)) order.erase(std::find(order.begin(), order.end(), f));
  }
};

struct PointInput {
  torch::Tensor coords;  // [1,1,N,2] model pixels
  torch::Tensor labels;  // [1,1,N] int32
};

struct ObjectState {
  int64_t id = 0;
  OrderedOuts cond;
  OrderedOuts non_cond;
  std::map<int64_t, PointInput> points;
  std::map<int64_t, torch::Tensor> masks;  // [1,1,R,R] 0/1
  std::map<int64_t, bool> tracked;          // frames_tracked_per_obj: frame -> reverse
};

struct VideoState {
  std::shared_ptr<TrackerState> tracker;
  int64_t num_frames = 0;
  int64_t width = 0, height = 0;
  int64_t feature_cache_bytes = 0;
  std::vector<ObjectState> objects;  // in order of creation (obj_idx)
  std::vector<int64_t> new_inputs;   // obj_with_new_inputs (ids)
  std::map<int64_t, FrameFeatures> features;
  std::vector<int64_t> feature_lru;  // most recent at the back
  int64_t features_bytes = 0;
  torch::Tensor maskmem_pos;  // shared memory position encoding
  int64_t bytes = 0;          // for the handle (fixed at creation)
  int64_t memory_window = 16;  // tracked frames kept per object around the front and prompts
};

class Tracker : public Napi::ObjectWrap<Tracker> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Value Load(const Napi::CallbackInfo& info, std::shared_ptr<EngineCore> core);
  explicit Tracker(const Napi::CallbackInfo& info);

 private:
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Prompt(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value RemoveObject(const Napi::CallbackInfo& info);
  Napi::Value Reset(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  std::shared_ptr<TrackerState> Live(Napi::Env env, const char* op);

  std::shared_ptr<TrackerState> state_;
  std::shared_ptr<EngineCore> core_;
  Napi::ObjectReference engine_;
};

class VideoHandle : public StateHandle<VideoHandle, VideoState> {
 public:
  static constexpr const char* kClassName = "VideoHandle";
  static constexpr const char* kMadeBy = "use tracker.open()";
  static constexpr const char* kHandleName = "a VideoHandle";
  static constexpr const char* kDisposedMessage = "the video session has been closed";
  static Napi::FunctionReference& Constructor(Napi::Env env) { return AddonData::Get(env)->video_ctor; }

  static Napi::Function Init(Napi::Env env);
  explicit VideoHandle(const Napi::CallbackInfo& info) : StateHandle(info) {}
};

}  // namespace sam3
