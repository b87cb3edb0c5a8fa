// Engine: the JS class that owns one device's engine thread (binding/engine_thread.h) and loads
// models and trackers onto it.
#pragma once

#include <napi.h>

#include <memory>

#include "binding/engine_thread.h"

namespace sam3 {

class Engine : public Napi::ObjectWrap<Engine> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Engine(const Napi::CallbackInfo& info);
  ~Engine() override;

 private:
  Napi::Value LoadModel(const Napi::CallbackInfo& info);
  Napi::Value LoadTracker(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value WarnForTest(const Napi::CallbackInfo& info);
  Napi::Value DeviceName(const Napi::CallbackInfo& info);

  std::shared_ptr<EngineCore> core_;
};

}  // namespace sam3
