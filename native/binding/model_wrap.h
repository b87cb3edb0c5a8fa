// Model: the JS class over a loaded detector (core/detector.h). Its methods read and check their
// arguments on the JS thread, queue the core function on the engine thread, and turn the result
// into JS in the job's finisher.
#pragma once

#include <napi.h>

#include <memory>

#include "binding/addon.h"
#include "binding/engine_thread.h"
#include "binding/handles.h"
#include "core/detector.h"

namespace sam3 {

class Model : public EngineResource<Model, ModelState> {
 public:
  static constexpr const char* kClassName = "Model";
  static constexpr const char* kMadeBy = "use engine.loadModel()";
  static constexpr const char* kHandleName = "a Model loaded on this engine";
  static constexpr const char* kDisposedMessage = "the model has been disposed";
  static Napi::FunctionReference& Constructor(Napi::Env env) { return AddonData::Get(env)->model_ctor; }

  static Napi::Function Init(Napi::Env env);
  // engine.loadModel(options)
  static Napi::Value Load(const Napi::CallbackInfo& info, std::shared_ptr<EngineCore> core);
  explicit Model(const Napi::CallbackInfo& info) : EngineResource(info) {}

 private:
  Napi::Value EncodeImages(const Napi::CallbackInfo& info);
  Napi::Value EncodeTexts(const Napi::CallbackInfo& info);
  Napi::Value Segment(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
};

}  // namespace sam3
