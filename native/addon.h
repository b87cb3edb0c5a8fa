// Per-environment data: constructors of the wrapped classes (so worker threads' results can create
// instances, and arguments can be type-checked with instanceof).
#pragma once

#include <napi.h>

#include <string>

namespace sam3 {

// A JS string of bytes known to be ASCII (COCO RLE counts): created as latin1, which V8 copies
// as one-byte characters without the UTF-8 decoding Napi::String::New(std::string) asks for.
inline Napi::String AsciiString(Napi::Env env, const std::string& s) {
  napi_value v;
  NAPI_THROW_IF_FAILED(env, napi_create_string_latin1(env, s.data(), s.size(), &v), Napi::String());
  return Napi::String(env, v);
}

struct AddonData {
  Napi::FunctionReference engine_ctor;
  Napi::FunctionReference model_ctor;
  Napi::FunctionReference features_ctor;
  Napi::FunctionReference text_ctor;
  Napi::FunctionReference tracker_ctor;
  Napi::FunctionReference video_ctor;

  static AddonData* Get(Napi::Env env) { return env.GetInstanceData<AddonData>(); }
};

}  // namespace sam3
