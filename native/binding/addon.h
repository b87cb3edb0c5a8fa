// Per-environment data: constructors of the wrapped classes (so engine jobs' finishers can create
// instances, and arguments can be type-checked with instanceof).
#pragma once

#include <napi.h>

namespace sam3 {

struct AddonData {
  Napi::FunctionReference engine_ctor;
  Napi::FunctionReference model_ctor;
  Napi::FunctionReference features_ctor;
  Napi::FunctionReference text_ctor;
  Napi::FunctionReference tracker_ctor;
  Napi::FunctionReference video_ctor;
  Napi::FunctionReference logits_ctor;

  static AddonData* Get(Napi::Env env) { return env.GetInstanceData<AddonData>(); }
};

}  // namespace sam3
