// The one boundary where native errors become JS errors: an Error whose `.code` is the ERR_SAM3_*
// code (core/errors.h), which src/errors.ts turns into a Sam3Error.
#pragma once

#include <napi.h>

#include <string>

#include "core/errors.h"

namespace sam3 {

Napi::Error MakeJsError(Napi::Env env, const std::string& code, const std::string& message);

inline Napi::Error MakeJsError(Napi::Env env, const NativeError& e) { return MakeJsError(env, e.code(), e.what()); }

// Throws a JS error with code kInvalidArgument, for argument checks on the JS thread.
[[noreturn]] void ThrowInvalid(Napi::Env env, const std::string& message);

}  // namespace sam3
