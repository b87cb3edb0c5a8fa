#include "binding/engine_wrap.h"

#include <algorithm>
#include <string>
#include <thread>

#include <torch/cuda.h>

#include "binding/js_errors.h"
#include "binding/model_wrap.h"
#include "binding/tracker_wrap.h"

namespace sam3 {

Napi::Function Engine::Init(Napi::Env env) {
  return DefineClass(env, "Engine",
                     {
                         InstanceMethod<&Engine::LoadModel>("loadModel"),
                         InstanceMethod<&Engine::LoadTracker>("loadTracker"),
                         InstanceMethod<&Engine::Stats>("stats"),
                         InstanceMethod<&Engine::Close>("close"),
                         InstanceMethod<&Engine::WarnForTest>("warnForTest"),
                         InstanceAccessor<&Engine::DeviceName>("device"),
                     });
}

Engine::Engine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Engine>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) ThrowInvalid(env, "Engine(device, threads): device must be a string such as 'cpu' or 'cuda:0'");
  std::string name = info[0].As<Napi::String>();
  int threads = 0;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsNumber()) ThrowInvalid(env, "Engine(device, threads): threads must be a number");
    threads = info[1].As<Napi::Number>().Int32Value();
  }
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(name);
  } catch (...) {
    ThrowInvalid(env, "unknown device '" + name + "': use 'cpu', 'cuda' or 'cuda:N'");
  }
  if (device.is_cuda()) {
    if (!torch::cuda::is_available()) {
      throw MakeJsError(env, code::kDeviceMismatch,
                        "device '" + name + "' requested but CUDA is not available in this build or machine");
    }
    const int count = static_cast<int>(torch::cuda::device_count());
    if (device.has_index() && device.index() >= count) {
      throw MakeJsError(env, code::kDeviceMismatch,
                        "device '" + name + "' requested but only " + std::to_string(count) + " CUDA device(s) exist");
    }
    if (!device.has_index()) device = torch::Device(torch::kCUDA, 0);
  } else if (!device.is_cpu()) {
    ThrowInvalid(env, "device '" + name + "' is not supported: use 'cpu' or 'cuda:N'");
  }
  core_ = std::make_shared<EngineCore>(device, threads);
  core_->Start(env);
  // Join the thread before the environment goes away (process exit, worker thread end).
  auto weak = std::weak_ptr<EngineCore>(core_);
  env.AddCleanupHook([weak]() {
    if (auto c = weak.lock()) c->Close();
  });
}

Engine::~Engine() {
  if (core_) core_->Close();
}

Napi::Value Engine::LoadModel(const Napi::CallbackInfo& info) {
  return Model::Load(info, core_);
}

Napi::Value Engine::LoadTracker(const Napi::CallbackInfo& info) {
  return Tracker::Load(info, core_);
}

Napi::Value Engine::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  out.Set("device", core_->device().str());
  out.Set("threads", core_->threads());
  out.Set("queued", static_cast<double>(core_->queued()));
  out.Set("running", static_cast<double>(core_->running()));
  out.Set("completed", static_cast<double>(core_->completed()));
  out.Set("closed", core_->closed());
  return out;
}

Napi::Value Engine::Close(const Napi::CallbackInfo& info) {
  core_->Close();
  return info.Env().Undefined();
}

// warnForTest(message, times) -> Promise<void>: raises TORCH_WARN `times` times on the engine
// thread, as a libtorch op would; tests of the warning relay (binding/warnings.h).
Napi::Value Engine::WarnForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber()) ThrowInvalid(env, "warnForTest(message: string, times: number)");
  std::string message = info[0].As<Napi::String>();
  const int64_t times = info[1].As<Napi::Number>().Int64Value();
  return core_->Queue(
      env, "warnForTest",
      [message, times]() {
        for (int64_t i = 0; i < times; i++) TORCH_WARN(message);
        return true;
      },
      [](Napi::Env env, bool) -> Napi::Value { return env.Undefined(); });
}

Napi::Value Engine::DeviceName(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), core_->device().str());
}

}  // namespace sam3
