#include "binding/warnings.h"

#include <cstdint>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include <c10/util/Exception.h>

#include "binding/js_errors.h"

namespace sam3 {
namespace {

struct PendingWarning {
  std::string message;
  std::string source;  // file:line in libtorch
  bool deprecation;
  uint64_t count;
};

// Warnings kept for the JS thread at most; more distinct ones before it drains are counted as dropped.
constexpr size_t kMaxPending = 256;

class WarningRelay : public c10::WarningHandler {
 public:
  static WarningRelay& Get() {
    // Never destroyed: engine threads may still warn while static destructors run at exit.
    static auto* relay = new WarningRelay();
    return *relay;
  }

  // Any thread.
  void process(const c10::Warning& warning) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!live_) {
      lock.unlock();
      c10::WarningHandler::process(warning);  // c10's default: stderr
      return;
    }
    const auto& loc = warning.source_location();
    std::string source = std::string(loc.file ? loc.file : "?") + ":" + std::to_string(loc.line);
    bool queued = false;
    for (auto& p : pending_) {
      if (p.message == warning.msg() && p.source == source) {
        p.count++;
        queued = true;
        break;
      }
    }
    if (!queued) {
      if (pending_.size() >= kMaxPending) {
        dropped_++;
      } else {
        pending_.push_back({warning.msg(), std::move(source), std::holds_alternative<c10::DeprecationWarning>(warning.type()), 1});
      }
    }
    if (!signalled_) {
      // One wake-up per batch: the JS thread drains everything queued until then.
      if (tsfn_.NonBlockingCall([this](Napi::Env env, Napi::Function fn) { Drain(env, fn); }) == napi_ok) signalled_ = true;
    }
  }

  // JS thread.
  void SetListener(Napi::Env env, Napi::Value fn) {
    std::lock_guard<std::mutex> lock(mu_);
    if (live_) {
      tsfn_.Release();
      live_ = false;
      signalled_ = false;
    }
    if (fn.IsNull() || fn.IsUndefined()) return;
    const uint64_t generation = ++generation_;
    tsfn_ = Napi::ThreadSafeFunction::New(env, fn.As<Napi::Function>(), "sam3-libtorch-warnings", 0, 1,
                                          [this, generation](Napi::Env) { Finalized(generation); });
    tsfn_.Unref(env);  // a listener must not keep the process alive
    live_ = true;
  }

 private:
  void Drain(Napi::Env env, Napi::Function fn) {
    std::vector<PendingWarning> batch;
    uint64_t dropped = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(pending_);
      dropped = dropped_;
      dropped_ = 0;
      signalled_ = false;
    }
    if (env == nullptr || fn.IsEmpty() || (batch.empty() && dropped == 0)) return;
    Napi::HandleScope scope(env);
    Napi::Array list = Napi::Array::New(env, batch.size());
    for (size_t i = 0; i < batch.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("message", batch[i].message);
      o.Set("source", batch[i].source);
      o.Set("deprecation", batch[i].deprecation);
      o.Set("count", static_cast<double>(batch[i].count));
      list.Set(static_cast<uint32_t>(i), o);
    }
    try {
      fn.Call({list, Napi::Number::New(env, static_cast<double>(dropped))});
    } catch (const Napi::Error&) {
      // A listener that throws must not take the process down; the exception is dropped.
    }
  }

  // JS thread, when a released (or torn down with its environment) function is finalised.
  void Finalized(uint64_t generation) {
    std::lock_guard<std::mutex> lock(mu_);
    if (generation != generation_ || !live_) return;
    live_ = false;
    signalled_ = false;
  }

  std::mutex mu_;
  std::vector<PendingWarning> pending_;
  uint64_t dropped_ = 0;
  bool signalled_ = false;
  bool live_ = false;
  uint64_t generation_ = 0;
  Napi::ThreadSafeFunction tsfn_;
};

}  // namespace

void InstallWarningRelay() { c10::WarningUtils::set_warning_handler(&WarningRelay::Get()); }

Napi::Value SetWarningListener(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value fn = info.Length() > 0 ? info[0] : env.Null();
  if (!fn.IsFunction() && !fn.IsNull() && !fn.IsUndefined()) ThrowInvalid(env, "setWarningListener(listener: function | null)");
  WarningRelay::Get().SetListener(env, fn);
  return env.Undefined();
}

}  // namespace sam3
