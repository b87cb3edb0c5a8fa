#include "engine.h"

#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <torch/cuda.h>

#include "addon.h"
#include "model.h"
#include "video.h"

namespace sam3 {

struct EngineTask {
  Work work;
  std::string label;
  Napi::Promise::Deferred deferred;
  Finisher finisher;
  std::unique_ptr<NativeError> error;
  Napi::ObjectReference keep;  // created and released on the JS thread only
};

// Keeps the core alive until the thread-safe function is finalised, so a late delivery never sees a
// destroyed core.
struct TsfnHold {
  std::shared_ptr<EngineCore> core;
};

EngineCore::EngineCore(torch::Device device, int threads) : device_(device), threads_(threads) {}

EngineCore::~EngineCore() { Close(); }

void EngineCore::Start(Napi::Env env) {
  auto* hold = new TsfnHold{shared_from_this()};
  tsfn_ = Tsfn::New(env, "sam3-engine", 0, 1, this,
                    [](Napi::Env, TsfnHold* h, EngineCore*) { delete h; }, hold);
  tsfn_live_ = true;
  tsfn_.Unref(env);  // an idle engine must not keep the process alive
  thread_ = std::thread([this] { Loop(); });
}

Napi::Promise EngineCore::Submit(Napi::Env env, Work work, std::string label, Napi::Object keep) {
  auto deferred = Napi::Promise::Deferred::New(env);
  if (closed_.load()) {
    deferred.Reject(MakeJsError(env, code::kEngineClosed,
                                label + ": the engine for " + device_.str() + " is closed")
                        .Value());
    return deferred.Promise();
  }
  auto* task = new EngineTask{std::move(work), std::move(label), deferred, nullptr, nullptr, Napi::ObjectReference()};
  if (!keep.IsEmpty()) task->keep = Napi::Persistent(keep);
  if (pending_js_++ == 0) tsfn_.Ref(env);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(task);
    queued_++;
  }
  cv_.notify_one();
  return deferred.Promise();
}

void EngineCore::Loop() {
  at::set_num_threads(threads_);
  c10::OptionalDeviceGuard device_guard;
  if (!device_.is_cpu()) device_guard.reset_device(device_);
  for (;;) {
    EngineTask* task = nullptr;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return closed_.load() || !queue_.empty(); });
      if (queue_.empty()) break;  // closed and drained
      task = queue_.front();
      queue_.pop_front();
      queued_--;
    }
    if (closed_.load()) {
      task->error = std::make_unique<NativeError>(
          code::kEngineClosed, task->label + ": the engine for " + device_.str() + " was closed");
    } else {
      running_++;
      try {
        c10::InferenceMode inference_guard;
        task->finisher = task->work();
      } catch (...) {
        task->error = std::make_unique<NativeError>(CurrentError(code::kInference, task->label));
      }
      running_--;
    }
    // Free the job's captured tensors here, on the engine thread, not on the JS thread.
    task->work = nullptr;
    completed_++;
    if (tsfn_.NonBlockingCall(task) != napi_ok) {
      // The environment is shutting down; nobody is waiting any more. The reference must not be
      // released off the JS thread, so it is abandoned with the dying environment.
      task->keep.SuppressDestruct();
      delete task;
    }
  }
}

void EngineCore::Deliver(Napi::Env env, Napi::Function, EngineCore* core, EngineTask* task) {
  std::unique_ptr<EngineTask> owned(task);
  if (env == nullptr) return;  // finalising: the promise can no longer be settled
  Napi::HandleScope scope(env);
  if (task->error) {
    owned->deferred.Reject(MakeJsError(env, task->error->code(), task->error->what()).Value());
  } else {
    try {
      owned->deferred.Resolve(task->finisher(env, owned->keep.IsEmpty() ? Napi::Object() : owned->keep.Value()));
    } catch (const Napi::Error& e) {
      owned->deferred.Reject(e.Value());
    } catch (...) {
      NativeError err = CurrentError(code::kInference, task->label);
      owned->deferred.Reject(MakeJsError(env, err.code(), err.what()).Value());
    }
  }
  owned->finisher = nullptr;
  if (--core->pending_js_ == 0 && core->tsfn_live_) core->tsfn_.Unref(env);
}

void EngineCore::Close() {
  if (closed_.exchange(true)) return;
  cv_.notify_all();
  if (thread_.joinable()) {
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();
    } else {
      thread_.join();
    }
  }
  if (tsfn_live_) {
    tsfn_live_ = false;
    tsfn_.Release();
  }
}

// ---------------------------------------------------------------------------------------------
// JS class

Napi::Function Engine::Init(Napi::Env env) {
  return DefineClass(env, "Engine",
                     {
                         InstanceMethod<&Engine::LoadModel>("loadModel"),
                         InstanceMethod<&Engine::LoadTracker>("loadTracker"),
                         InstanceMethod<&Engine::Stats>("stats"),
                         InstanceMethod<&Engine::Close>("close"),
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

Napi::Value Engine::DeviceName(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), core_->device().str());
}

}  // namespace sam3
