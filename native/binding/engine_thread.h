// EngineCore: one dedicated inference thread per device with a FIFO job queue (the JS class that owns
// it is binding/engine_wrap.h).
//
// All libtorch work for a device runs on this thread (never on the JS thread, never on libuv's pool:
// each pool thread would become its own OpenMP master and oversubscribe the cores). A job is a
// closure that runs on the worker and returns a "finisher" that builds the JS result back on the
// JS thread, where the promise is settled. No N-API call is ever made off the JS thread.
#pragma once

#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <torch/torch.h>

#include "binding/js_errors.h"

namespace sam3 {

// Builds the JS value of a finished job; runs on the JS thread. `keep` is the object passed to
// Submit (empty if none), held alive for the job's duration.
using Finisher = std::function<Napi::Value(Napi::Env, Napi::Object keep)>;
// The work of a job; runs on the engine thread. Throws to fail the job.
using Work = std::function<Finisher()>;

struct EngineTask;

class EngineCore : public std::enable_shared_from_this<EngineCore> {
 public:
  EngineCore(torch::Device device, int threads);
  ~EngineCore();

  void Start(Napi::Env env);
  // Queues work; the returned promise settles on the JS thread.
  Napi::Promise Submit(Napi::Env env, Work work, std::string label, Napi::Object keep = Napi::Object());
  // The usual job: `run` (a core call returning a plain result) on the engine thread, then
  // to_js(env, result) on the JS thread for the promise's value.
  template <typename Run, typename ToJs>
  Napi::Promise Queue(Napi::Env env, std::string label, Run run, ToJs to_js) {
    Work work = [run = std::move(run), to_js = std::move(to_js)]() -> Finisher {
      auto result = run();
      return [result = std::move(result), to_js](Napi::Env env, Napi::Object) -> Napi::Value { return to_js(env, result); };
    };
    return Submit(env, std::move(work), std::move(label));
  }
  // Stops accepting jobs, lets queued ones fail with ENGINE_CLOSED, joins the thread.
  void Close();

  const torch::Device& device() const { return device_; }
  int threads() const { return threads_; }
  size_t queued() const { return queued_.load(); }
  size_t running() const { return running_.load(); }
  uint64_t completed() const { return completed_.load(); }
  bool closed() const { return closed_.load(); }

 private:
  void Loop();
  static void Deliver(Napi::Env env, Napi::Function, EngineCore* core, EngineTask* task);

  torch::Device device_;
  int threads_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<EngineTask*> queue_;
  std::atomic<bool> closed_{false};
  std::atomic<size_t> queued_{0};
  std::atomic<size_t> running_{0};
  std::atomic<uint64_t> completed_{0};
  size_t pending_js_ = 0;  // tasks whose promise is not settled yet; touched on the JS thread only
  using Tsfn = Napi::TypedThreadSafeFunction<EngineCore, EngineTask, &EngineCore::Deliver>;
  Tsfn tsfn_;
  bool tsfn_live_ = false;
};

}  // namespace sam3
