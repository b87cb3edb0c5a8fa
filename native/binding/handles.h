// The JS objects that own native state, with one set of guards: a handle can be made only by the
// addon (from an External), is checked with instanceof where it comes back as an argument, and
// refuses use once disposed (ERR_SAM3_DISPOSED). dispose() drops the handle's reference now; jobs
// already queued hold their own, so the memory goes when the last of them finishes.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "binding/addon.h"
#include "binding/engine_thread.h"
#include "binding/js_errors.h"
#include "core/detector.h"
#include "core/interactive.h"
#include "core/tracker.h"

namespace sam3 {

// A JS External holding a shared_ptr, deleted with the External.
template <typename T>
Napi::External<std::shared_ptr<T>> SharedExternal(Napi::Env env, std::shared_ptr<T> p) {
  return Napi::External<std::shared_ptr<T>>::New(env, new std::shared_ptr<T>(std::move(p)),
                                                 [](Napi::Env, std::shared_ptr<T>* q) { delete q; });
}

template <typename T>
std::shared_ptr<T> FromSharedExternal(const Napi::Value& v) {
  return *v.As<Napi::External<std::shared_ptr<T>>>().Data();
}

// Self supplies kClassName, kMadeBy ("use ..."), kHandleName (for "must be ..."), kDisposedMessage
// and Constructor(env).
template <typename Self, typename State>
class Handle : public Napi::ObjectWrap<Self> {
 public:
  // A new JS instance around `state`; `extra` are further constructor arguments.
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<State> state, const std::vector<napi_value>& extra = {}) {
    std::vector<napi_value> args{SharedExternal(env, std::move(state))};
    args.insert(args.end(), extra.begin(), extra.end());
    return Self::Constructor(env).New(args);
  }

  // One new JS instance per state, as a JS array.
  static Napi::Array WrapAll(Napi::Env env, const std::vector<std::shared_ptr<State>>& states) {
    Napi::Array out = Napi::Array::New(env, states.size());
    for (size_t i = 0; i < states.size(); i++) out.Set(static_cast<uint32_t>(i), Wrap(env, states[i]));
    return out;
  }

  // The live state of `v`, which must be a Self; `what` names the argument in messages.
  static std::shared_ptr<State> Get(const Napi::Value& v, const char* what) {
    Napi::Env env = v.Env();
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Self::Constructor(env).Value())) {
      ThrowInvalid(env, std::string(what) + " must be " + Self::kHandleName);
    }
    return Napi::ObjectWrap<Self>::Unwrap(v.As<Napi::Object>())->Live(env, what);
  }

 protected:
  using Method = Napi::Value (Self::*)(const Napi::CallbackInfo&);

  // Made from (External state, ...): `args` arguments in all.
  Handle(const Napi::CallbackInfo& info, size_t args) : Napi::ObjectWrap<Self>(info) {
    if (info.Length() != args || !info[0].IsExternal()) {
      ThrowInvalid(info.Env(), std::string(Self::kClassName) + " cannot be constructed directly: " + Self::kMadeBy);
    }
    state_ = FromSharedExternal<State>(info[0]);
  }

  // The state, or ERR_SAM3_DISPOSED naming the operation.
  std::shared_ptr<State> Live(Napi::Env env, const char* op) const {
    if (!state_) throw MakeJsError(env, code::kDisposed, std::string(op) + ": " + Self::kDisposedMessage);
    return state_;
  }

  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !state_); }

  std::shared_ptr<State> state_;
};

// A handle on data made by a job (image features, a text embedding, a video's tracking state).
template <typename Self, typename State>
class DataHandle : public Handle<Self, State> {
 public:
  explicit DataHandle(const Napi::CallbackInfo& info) : Handle<Self, State>(info, 1) { bytes_ = this->state_->bytes; }

 protected:
  using Method = typename Handle<Self, State>::Method;

  static std::vector<Napi::ClassPropertyDescriptor<Self>> CommonProperties() {
    return {
        Napi::ObjectWrap<Self>::InstanceMethod("dispose", static_cast<Method>(&DataHandle::Dispose)),
        Napi::ObjectWrap<Self>::InstanceAccessor("disposed", static_cast<Method>(&DataHandle::Disposed), nullptr),
        Napi::ObjectWrap<Self>::InstanceAccessor("bytes", static_cast<Method>(&DataHandle::Bytes), nullptr),
    };
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    this->state_.reset();
    return info.Env().Undefined();
  }
  // The state's bytes while it lives (image features grow when the tracker's features are added to
  // them), the last known count once disposed.
  Napi::Value Bytes(const Napi::CallbackInfo& info) {
    if (this->state_) bytes_ = static_cast<int64_t>(this->state_->bytes);
    return Napi::Number::New(info.Env(), static_cast<double>(bytes_));
  }

  int64_t bytes_ = 0;
};

// A resource loaded on an engine (a Model, a Tracker): it queues its jobs on the engine's core and
// keeps the JS Engine (and so its thread) alive while it lives. Made from (External state,
// External core, engine).
template <typename Self, typename State>
class EngineResource : public Handle<Self, State> {
 public:
  explicit EngineResource(const Napi::CallbackInfo& info) : Handle<Self, State>(info, 3) {
    if (!info[1].IsExternal() || !info[2].IsObject()) {
      ThrowInvalid(info.Env(), std::string(Self::kClassName) + " cannot be constructed directly: " + Self::kMadeBy);
    }
    core_ = FromSharedExternal<EngineCore>(info[1]);
    engine_ = Napi::Persistent(info[2].As<Napi::Object>());
  }

  // engine.loadX(): `load` (a core call returning the state) on the engine thread; its promise
  // resolves to a new Self on `core`, which keeps the calling JS Engine alive.
  static Napi::Value SubmitLoad(const Napi::CallbackInfo& info, std::shared_ptr<EngineCore> core, const char* label,
                                std::function<std::shared_ptr<State>()> load) {
    Work work = [load = std::move(load), core]() -> Finisher {
      std::shared_ptr<State> state = load();
      return [state, core](Napi::Env env, Napi::Object engine) -> Napi::Value {
        return Handle<Self, State>::Wrap(env, state, {SharedExternal(env, core), engine});
      };
    };
    return core->Submit(info.Env(), std::move(work), label, info.This().As<Napi::Object>());
  }

 protected:
  using Method = typename Handle<Self, State>::Method;

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    this->state_.reset();
    engine_.Reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<EngineCore> core_;
  Napi::ObjectReference engine_;
};

// Refuses a handle made by another owner (features of another model, a video of another tracker).
inline void CheckOwner(Napi::Env env, bool same_owner, const std::string& op, const char* message) {
  if (!same_owner) ThrowInvalid(env, op + ": " + message);
}

class ImageFeatures : public DataHandle<ImageFeatures, FeaturesState> {
 public:
  static constexpr const char* kClassName = "ImageFeatures";
  static constexpr const char* kMadeBy = "use model.encodeImages()";
  static constexpr const char* kHandleName = "an ImageFeatures handle";
  static constexpr const char* kDisposedMessage = "the image features have been disposed";
  static Napi::FunctionReference& Constructor(Napi::Env env) { return AddonData::Get(env)->features_ctor; }

  static Napi::Function Init(Napi::Env env);
  explicit ImageFeatures(const Napi::CallbackInfo& info);

 private:
  Napi::Value Width(const Napi::CallbackInfo& info);
  Napi::Value Height(const Napi::CallbackInfo& info);
  Napi::Value PixelSkip(const Napi::CallbackInfo& info);
  int64_t width_ = 0, height_ = 0;
};

class TextEmbedding : public DataHandle<TextEmbedding, TextState> {
 public:
  static constexpr const char* kClassName = "TextEmbedding";
  static constexpr const char* kMadeBy = "use model.encodeTexts()";
  static constexpr const char* kHandleName = "a TextEmbedding handle";
  static constexpr const char* kDisposedMessage = "the text embedding has been disposed";
  static Napi::FunctionReference& Constructor(Napi::Env env) { return AddonData::Get(env)->text_ctor; }

  static Napi::Function Init(Napi::Env env);
  explicit TextEmbedding(const Napi::CallbackInfo& info) : DataHandle(info) {}
};

class VideoHandle : public DataHandle<VideoHandle, VideoState> {
 public:
  static constexpr const char* kClassName = "VideoHandle";
  static constexpr const char* kMadeBy = "use tracker.open()";
  static constexpr const char* kHandleName = "a VideoHandle";
  static constexpr const char* kDisposedMessage = "the video session has been closed";
  static Napi::FunctionReference& Constructor(Napi::Env env) { return AddonData::Get(env)->video_ctor; }

  static Napi::Function Init(Napi::Env env);
  explicit VideoHandle(const Napi::CallbackInfo& info) : DataHandle(info) {}
};

class MaskLogits : public DataHandle<MaskLogits, MaskLogitsState> {
 public:
  static constexpr const char* kClassName = "MaskLogits";
  static constexpr const char* kMadeBy = "use tracker.interactive()";
  static constexpr const char* kHandleName = "a MaskLogits handle";
  static constexpr const char* kDisposedMessage = "the mask logits have been disposed";
  static Napi::FunctionReference& Constructor(Napi::Env env) { return AddonData::Get(env)->logits_ctor; }

  static Napi::Function Init(Napi::Env env) { return DefineClass(env, kClassName, CommonProperties()); }
  explicit MaskLogits(const Napi::CallbackInfo& info) : DataHandle(info) {}
};

}  // namespace sam3
