// The SAM 3 video tracker: a port of transformers' Sam3TrackerVideoModel tracking loop over the
// tracker pieces of a bundle (TrackerState) and the state of one video (VideoState, transformers'
// Sam3TrackerVideoInferenceSession): a per-object memory bank of conditioning frames (prompted)
// and tracked frames, object pointers, occlusion scores, forward and reverse tracking.
//
// Torch only. All of it runs on the engine thread (FIFO), so a video's state is only ever touched
// by one thread; the binding (binding/tracker_wrap.cc) holds handles and copies arguments.
#pragma once

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "core/detector.h"
#include "core/preprocess.h"

namespace sam3 {

struct TrackerConfig {
  std::string neck, decode_multi, decode_single, mask_prompt, mem_enc, mem_enc_points, mem_attn;
  std::string interactive_multi, interactive_single;  // Sam3TrackerModel on one image (core/interactive.h)
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
  torch::jit::Module interactive_multi, interactive_single;
  ImageProcessor processor;
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
  bool reconditioned = false;    // a tracked frame made a conditioning frame by concept tracking
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
  const FrameOut* find(int64_t f) const { return const_cast<OrderedOuts*>(this)->find(f); }
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
  // frames_tracked_per_obj: which frames the object was tracked on (one bit a frame, not a map
  // node, so a long video's bookkeeping stays small; transformers also stores the direction, which
  // nothing reads).
  std::vector<bool> tracked;
  bool WasTracked(int64_t frame) const { return frame < static_cast<int64_t>(tracked.size()) && tracked[frame]; }
  void MarkTracked(int64_t frame) {
    if (frame >= static_cast<int64_t>(tracked.size())) tracked.resize(frame + 1, false);
    tracked[frame] = true;
  }
};

struct ConceptState;  // core/concept.h
struct ConceptFrame;

struct VideoState {
  std::shared_ptr<TrackerState> tracker;
  // Text concepts tracked in this video (core/concept.h); null until the first one is added.
  std::shared_ptr<ConceptState> concepts;
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

// Loads the tracker pieces onto `device`; the tracker runs `model`'s ViT. Engine thread.
std::shared_ptr<TrackerState> LoadTracker(const TrackerConfig& c, const torch::Device& device, std::shared_ptr<ModelState> model);

struct VideoOptions {
  int64_t num_frames = 0;
  int64_t width = 0, height = 0;
  int64_t feature_cache_bytes = 0;
  std::optional<int64_t> memory_window;
};

// A new, empty video state (no torch work: callable on any thread).
std::shared_ptr<VideoState> OpenVideo(const std::shared_ptr<TrackerState>& tracker, const VideoOptions& options);

// Normalised [x, y] pairs and their labels -> a point prompt in model pixels:
// float32(normalised) * resolution, in float32, like the reference processor.
PointInput MakePointInput(const std::vector<float>& xy, const std::vector<int32_t>& labels, int64_t resolution);

// One object's prompt on a frame: points or a mask (video height x width uint8, CPU).
struct PromptEntry {
  int64_t id = 0;
  std::optional<PointInput> points;
  std::optional<torch::Tensor> mask;
};

// The outputs of one frame for every object.
struct StepResult {
  bool need_frame = false;  // the frame's features are not cached: call again with its pixels
  int64_t frame = 0;
  std::vector<int64_t> ids;
  std::vector<std::string> masks;
  std::vector<float> boxes, scores, logits;
  int64_t memory_bytes = 0;
  int64_t height = 0, width = 0;
};

// The frame's vision features come from (first match) the cache, `vit` (the frame's ViT output from
// a detector pass) or `rgb` (CPU HWC uint8); with none of them the result asks for the frame.

// Sam3TrackerVideoProcessor.add_inputs_to_inference_session for each entry, then forward on the frame.
StepResult AddPrompts(VideoState& v, int64_t frame, const std::vector<PromptEntry>& entries, const torch::Tensor* rgb,
                      const torch::Tensor* vit);
// One step of propagate_in_video_iterator: forward on the frame for all objects.
StepResult PropagateStep(VideoState& v, int64_t frame, bool reverse, const torch::Tensor* rgb);
// Concept tracking's calls into the tracking loop (core/concept.cc), as Sam3VideoModel makes them.
// The frame's tracker features, from the cache, the frame's ViT output or its pixels (nullptr: neither given).
const FrameFeatures* FrameFeaturesFor(VideoState& v, int64_t frame, const torch::Tensor* rgb, const torch::Tensor* vit);
// run_tracker_propagation's tracker call (run_mem_encoder=False): every object on the frame;
// low-res mask logits [N,1,m,m] and object score logits [N,1]. Needs at least one object.
std::pair<torch::Tensor, torch::Tensor> TrackWithoutMemory(VideoState& v, int64_t frame, bool reverse, const FrameFeatures& f);
// _tracker_update_memories' encoder call: the frame's memory of object i from masks[i] [N,1,m,m]
// (logits through the sigmoid, not binarised) and score_logits[i] [N,1].
void EncodeFrameMemories(VideoState& v, int64_t frame, const FrameFeatures& f, const torch::Tensor& masks, const torch::Tensor& score_logits);
// The object's output on this frame becomes a conditioning frame (reconditioning).
void MakeConditioning(VideoState& v, size_t obj_idx, int64_t frame);
// _tracker_add_new_objects: mask inputs [N,1,R,R] (model resolution, float) for new object ids,
// then the tracker on the frame with memory encoding (which also runs the other objects again).
void AddMaskObjects(VideoState& v, int64_t frame, bool reverse, const std::vector<int64_t>& ids, const torch::Tensor& masks, const FrameFeatures& f);

// Drops an object, its prompts and its memories; false when there is no such object.
bool RemoveObject(VideoState& v, int64_t id);
// Like reset_tracking_data: objects, prompts and memories go; cached frame features stay.
void ResetTrackingData(VideoState& v);
// Bytes held for the video: cached features and every object's memories and prompts.
int64_t MemoryBytes(const VideoState& v);

}  // namespace sam3
