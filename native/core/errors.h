// The error type core code throws: a plain C++ exception carrying a stable ERR_SAM3_* code. The
// binding turns it into a JS Error with `.code` set (binding/js_errors.h); nothing here knows N-API.
#pragma once

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

// Classifies the exception currently being handled (call inside a catch block): a NativeError keeps
// its code, libtorch's out-of-memory errors become kOutOfMemory, anything else `default_code`.
NativeError CurrentError(const char* default_code, const std::string& context);

}  // namespace sam3
