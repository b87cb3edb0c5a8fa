// Errors that cross the native boundary. Every failure on the engine thread becomes a NativeError
// with a stable code; the JS side turns it into an Error with `.code` set. Nothing aborts.
#pragma once

#include <napi.h>

#include <stdexcept>
#include <string>

namespace sam3 {

// Stable codes, mirrored in src/errors.ts.
namespace code {
inline constexpr const char* kInvalidArgument = "ERR_SAM3_INVALID_ARGUMENT";
inline constexpr const char* kDisposed = "ERR_SAM3_DISPOSED";
inline constexpr const char* kModelLoad = "ERR_SAM3_MODEL_LOAD";
inline constexpr const char* kOutOfMemory = "ERR_SAM3_OUT_OF_MEMORY";
inline constexpr const char* kInference = "ERR_SAM3_INFERENCE";
inline constexpr const char* kEngineClosed = "ERR_SAM3_ENGINE_CLOSED";
inline constexpr const char* kDeviceMismatch = "ERR_SAM3_DEVICE_MISMATCH";
}  // namespace code

class NativeError : public std::runtime_error {
 public:
  NativeError(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// Classifies the exception currently being handled (call inside a catch block).
NativeError CurrentError(const char* default_code, const std::string& context);

Napi::Error MakeJsError(Napi::Env env, const std::string& code, const std::string& message);

// Throws a JS TypeError-like error with our code, for argument checks on the JS thread.
[[noreturn]] void ThrowInvalid(Napi::Env env, const std::string& message);

}  // namespace sam3
