#include "binding/js_errors.h"

namespace sam3 {

Napi::Error MakeJsError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

void ThrowInvalid(Napi::Env env, const std::string& message) {
  throw MakeJsError(env, code::kInvalidArgument, message);
}

}  // namespace sam3
