#include "binding/engine_thread.h"

#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>

#include "binding/warnings.h"

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
  InstallWarningRelay();
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
    owned->deferred.Reject(MakeJsError(env, *task->error).Value());
  } else {
    try {
      owned->deferred.Resolve(task->finisher(env, owned->keep.IsEmpty() ? Napi::Object() : owned->keep.Value()));
    } catch (const Napi::Error& e) {
      owned->deferred.Reject(e.Value());
    } catch (...) {
      owned->deferred.Reject(MakeJsError(env, CurrentError(code::kInference, task->label)).Value());
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

}  // namespace sam3
