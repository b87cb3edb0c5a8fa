#include "binding/tracker_wrap.h"

#include <cmath>
#include <cstring>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "binding/args.h"
#include "binding/js_errors.h"
#include "binding/marshal.h"
#include "binding/model_wrap.h"
#include "core/concept.h"

namespace sam3 {
namespace {

// The live video state of `v` (a VideoHandle, `what` in messages), opened by `tracker`.
std::shared_ptr<VideoState> VideoOf(const Napi::Value& v, const char* op, const char* what, const std::shared_ptr<TrackerState>& tracker) {
  auto video = VideoHandle::Get(v, what);
  CheckOwner(v.Env(), video->tracker == tracker, op, "this video session belongs to another tracker");
  return video;
}

// Optional {data, width, height} RGB frame of the video -> a CPU HWC uint8 tensor (copied now).
std::optional<torch::Tensor> ReadFrame(const Napi::Value& v, const VideoState& video) {
  if (!IsSet(v)) return std::nullopt;
  torch::Tensor t = ReadRgbImage(v, "frame");
  const int64_t h = t.size(0), w = t.size(1);
  if (w != video.width || h != video.height) {
    ThrowInvalid(v.Env(), "frame is " + std::to_string(w) + "x" + std::to_string(h) + " but the video is " + std::to_string(video.width) + "x" +
                              std::to_string(video.height));
  }
  return t;
}

int64_t FrameArg(const Napi::Value& v, const VideoState& video) {
  Napi::Env env = v.Env();
  if (!v.IsNumber()) ThrowInvalid(env, "frame index must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (d != std::floor(d) || d < 0 || d >= static_cast<double>(video.num_frames)) {
    ThrowInvalid(env, "frame index " + std::to_string(d) + " is outside [0, " + std::to_string(video.num_frames - 1) + "]");
  }
  return static_cast<int64_t>(d);
}

// One {objId, points?, labels?, mask?} of prompt()'s entries.
PromptEntry ReadPromptEntry(const Napi::Value& v, const VideoState& video, const TrackerConfig& c) {
  Napi::Env env = v.Env();
  OptionReader e = OptionsArg(v, "prompt: every entry must be an object", "prompt entry");
  PromptEntry entry;
  entry.id = e.Int("objId", 0);
  Napi::Value pv = e.Get("points"), mv = e.Get("mask");
  if (pv.IsTypedArray()) {
    auto p = TypedArrayArg<double>(pv, "prompt: points must be a Float64Array");
    auto l = TypedArrayArg<int32_t>(e.Get("labels"), "prompt: labels must be an Int32Array");
    const size_t n = l.ElementLength();
    if (n == 0 || p.ElementLength() != 2 * n) ThrowInvalid(env, "prompt: points must hold 2 numbers per label");
    std::vector<float> xy(2 * n);
    std::vector<int32_t> lab(n);
    for (size_t j = 0; j < 2 * n; j++) {
      if (!std::isfinite(p[j])) ThrowInvalid(env, "prompt: point coordinates must be finite");
      xy[j] = static_cast<float>(p[j]);
    }
    for (size_t j = 0; j < n; j++) lab[j] = l[j];
    entry.points = MakePointInput(xy, lab, c.resolution);
  } else if (mv.IsTypedArray()) {
    auto m = TypedArrayArg<uint8_t>(mv, "prompt: mask must be a Uint8Array");
    if (static_cast<int64_t>(m.ByteLength()) != video.width * video.height) ThrowInvalid(env, "prompt: mask must hold width*height bytes");
    torch::Tensor t = torch::empty({video.height, video.width}, torch::TensorOptions().dtype(torch::kUInt8));
    std::memcpy(t.data_ptr<uint8_t>(), m.Data(), m.ByteLength());
    entry.mask = t;
  } else {
    ThrowInvalid(env, "prompt: every entry needs points+labels or a mask");
  }
  return entry;
}

}  // namespace

Napi::Function Tracker::Init(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {
                         InstanceMethod<&Tracker::Open>("open"),
                         InstanceMethod<&Tracker::Prompt>("prompt"),
                         InstanceMethod<&Tracker::Step>("step"),
                         InstanceMethod<&Tracker::RemoveObject>("removeObject"),
                         InstanceMethod<&Tracker::Reset>("reset"),
                         InstanceMethod<&Tracker::ConceptAdd>("conceptAdd"),
                         InstanceMethod<&Tracker::ConceptRemove>("conceptRemove"),
                         InstanceMethod<&Tracker::ConceptTrack>("conceptTrack"),
                         InstanceMethod<&Tracker::Interactive>("interactive"),
                         InstanceMethod("dispose", static_cast<Method>(&Tracker::Dispose)),
                     });
}

Napi::Function VideoHandle::Init(Napi::Env env) { return DefineClass(env, kClassName, CommonProperties()); }

Napi::Value Tracker::Load(const Napi::CallbackInfo& info, std::shared_ptr<EngineCore> core) {
  Napi::Env env = info.Env();
  OptionReader r = OptionsArg(info[0], "loadTracker(options): options must be an object", "tracker option");
  TrackerConfig c;
  auto model = Model::Get(r.Get("model"), "loadTracker: model");
  if (model->device != core->device()) ThrowInvalid(env, "loadTracker: the model runs on another device than this engine");
  c.neck = r.String("neck");
  c.decode_multi = r.String("decodeMulti");
  c.decode_single = r.String("decodeSingle");
  c.mask_prompt = r.String("maskPrompt");
  c.mem_enc = r.String("memoryEncoder");
  c.mem_enc_points = r.String("memoryEncoderPoints");
  c.mem_attn = r.String("memoryAttention");
  c.interactive_multi = r.String("interactiveMulti");
  c.interactive_single = r.String("interactiveSingle");
  c.dtype = r.Dtype("dtype");
  c.resolution = r.Int("resolution", 1, kMaxSize);
  c.low_res = r.Int("lowResMaskSize", 1, kMaxSize);
  c.hidden = r.Int("hiddenSize", 1, kMaxSize);
  c.num_maskmem = r.Int("numMaskmem", 0);
  c.max_cond_frames = r.Int("maxCondFrames", -1);
  c.max_pointers = r.Int("maxObjectPointers", 1);
  c.multimask_in_sam = r.Bool("multimaskOutputInSam");
  c.multimask_min_pts = r.Int("multimaskMinPoints", 0);
  c.multimask_max_pts = r.Int("multimaskMaxPoints", 0);
  c.multimask_for_tracking = r.Bool("multimaskOutputForTracking");
  c.mean = r.Triple("mean");
  c.std = r.Triple("std");
  return SubmitLoad(info, core, "loadTracker", [c, device = core->device(), model] { return LoadTracker(c, device, model); });
}

Napi::Value Tracker::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "open");
  OptionReader r = OptionsArg(info[0], "open({numFrames, width, height, featureCacheBytes})", "open option");
  VideoOptions o;
  o.num_frames = r.Int("numFrames", 1);
  o.width = r.Int("width", 1);
  o.height = r.Int("height", 1);
  o.feature_cache_bytes = r.Int("featureCacheBytes", 0);
  if (r.Get("memoryWindow").IsNumber()) o.memory_window = r.Int("memoryWindow", 1);
  return VideoHandle::Wrap(env, OpenVideo(state, o));
}

Napi::Value Tracker::Prompt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const VideoFrame call = VideoFrameArgs(info, "prompt", info[2].IsArray(),
                                        "prompt(video, frame, entries: Array<{objId, points?, labels?, mask?}>, rgb?, features?)");
  const std::shared_ptr<VideoState>& video = call.video;
  Napi::Array arr = info[2].As<Napi::Array>();
  if (arr.Length() == 0) ThrowInvalid(env, "prompt: at least one entry is required");
  std::vector<PromptEntry> entries;
  for (uint32_t i = 0; i < arr.Length(); i++) entries.push_back(ReadPromptEntry(arr.Get(i), *video, call.tracker->config));
  std::optional<torch::Tensor> rgb = ReadFrame(info[3], *video);
  // The frame's image features from a detector pass (a text prompt): their ViT output saves running
  // the ViT again for the tracker.
  std::optional<torch::Tensor> vit;
  if (IsSet(info[4])) {
    auto feats = ImageFeatures::Get(info[4], "prompt(..., features)");
    CheckOwner(env, feats->owner == call.tracker->model.get(), "prompt", "the features come from another model");
    if (!feats->backbone.defined()) ThrowInvalid(env, "prompt: the features were encoded without keepBackbone");
    if (feats->width != video->width || feats->height != video->height) ThrowInvalid(env, "prompt: the features are of an image of another size than the video");
    vit = feats->backbone;
  }
  return core_->Queue(
      env, "videoPrompt",
      [video, frame = call.frame, entries = std::move(entries), rgb, vit] {
        return AddPrompts(*video, frame, entries, rgb ? &*rgb : nullptr, vit ? &*vit : nullptr);
      },
      StepResultToJs);
}

Napi::Value Tracker::Step(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const VideoFrame call = VideoFrameArgs(info, "step", info[2].IsBoolean(), "step(video, frame, reverse: boolean, rgb?)");
  const bool reverse = info[2].As<Napi::Boolean>().Value();
  std::optional<torch::Tensor> rgb = ReadFrame(info[3], *call.video);
  return core_->Queue(
      env, "videoStep",
      [video = call.video, frame = call.frame, reverse, rgb] { return PropagateStep(*video, frame, reverse, rgb ? &*rgb : nullptr); },
      StepResultToJs);
}

Tracker::VideoFrame Tracker::VideoFrameArgs(const Napi::CallbackInfo& info, const char* op, bool rest_ok, const char* usage) {
  Napi::Env env = info.Env();
  auto state = Live(env, op);
  if (info.Length() < 3 || !rest_ok) ThrowInvalid(env, usage);
  auto video = VideoOf(info[0], op, (std::string(op) + "(video, ...)").c_str(), state);
  const int64_t frame = FrameArg(info[1], *video);
  return {state, video, frame};
}

Napi::Value Tracker::RemoveObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto video = VideoOf(info[0], "removeObject", "removeObject(video, objId)", Live(env, "removeObject"));
  if (info.Length() < 2 || !info[1].IsNumber()) ThrowInvalid(env, "removeObject(video, objId: number)");
  const int64_t id = info[1].As<Napi::Number>().Int64Value();
  return core_->Queue(
      env, "videoRemoveObject",
      [video, id] {
        const bool removed = video->concepts ? RemoveConceptObject(*video, *video->concepts, id) : sam3::RemoveObject(*video, id);
        return std::make_pair(removed, MemoryBytes(*video));
      },
      [](Napi::Env env, const std::pair<bool, int64_t>& res) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("removed", res.first);
        o.Set("memoryBytes", static_cast<double>(res.second));
        return o;
      });
}

Napi::Value Tracker::Reset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto video = VideoOf(info[0], "reset", "reset(video)", Live(env, "reset"));
  return core_->Queue(
      env, "videoReset",
      [video] {
        ResetTrackingData(*video);
        video->concepts.reset();
        return MemoryBytes(*video);
      },
      [](Napi::Env env, int64_t memory_bytes) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(memory_bytes)); });
}

}  // namespace sam3
