// Tracker: the JS class over a loaded video tracker (core/tracker.h), and the per-video handles it
// opens. Its methods read and check their arguments on the JS thread, queue the core function on
// the engine thread, and turn the result into JS in the job's finisher.
#pragma once

#include <napi.h>

#include <memory>

#include "binding/addon.h"
#include "binding/engine_thread.h"
#include "binding/handles.h"
#include "core/tracker.h"

namespace sam3 {

class Tracker : public EngineResource<Tracker, TrackerState> {
 public:
  static constexpr const char* kClassName = "Tracker";
  static constexpr const char* kMadeBy = "use engine.loadTracker()";
  static constexpr const char* kHandleName = "a Tracker";
  static constexpr const char* kDisposedMessage = "the tracker has been disposed";
  static Napi::FunctionReference& Constructor(Napi::Env env) { return AddonData::Get(env)->tracker_ctor; }

  static Napi::Function Init(Napi::Env env);
  // engine.loadTracker(options)
  static Napi::Value Load(const Napi::CallbackInfo& info, std::shared_ptr<EngineCore> core);
  explicit Tracker(const Napi::CallbackInfo& info) : EngineResource(info) {}

 private:
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Prompt(const Napi::CallbackInfo& info);
  Napi::Value Step(const Napi::CallbackInfo& info);
  Napi::Value RemoveObject(const Napi::CallbackInfo& info);
  Napi::Value Reset(const Napi::CallbackInfo& info);
  // Concept tracking (binding/tracker_concepts.cc).
  Napi::Value ConceptAdd(const Napi::CallbackInfo& info);
  Napi::Value ConceptRemove(const Napi::CallbackInfo& info);
  Napi::Value ConceptTrack(const Napi::CallbackInfo& info);
  // Interactive segmentation on an image (binding/tracker_interactive.cc).
  Napi::Value Interactive(const Napi::CallbackInfo& info);

  // The arguments prompt() and step() begin with: (video, frame, ...) of a live tracker, the video
  // opened by it; `rest_ok` says whether the others fit `usage`.
  struct VideoFrame {
    std::shared_ptr<TrackerState> tracker;
    std::shared_ptr<VideoState> video;
    int64_t frame;
  };
  VideoFrame VideoFrameArgs(const Napi::CallbackInfo& info, const char* op, bool rest_ok, const char* usage);
};

}  // namespace sam3
