// The one set of JS argument readers. Each checks what it reads and throws a JS error with code
// ERR_SAM3_INVALID_ARGUMENT and a message naming the argument; none of them coerces.
#pragma once

#include <napi.h>

#include <array>
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "binding/js_errors.h"

namespace sam3 {

inline constexpr int64_t kMaxInt = 1'000'000'000'000;  // beyond any count, byte budget or id we take
inline constexpr int64_t kMaxSize = 1'000'000;  // beyond any image side, sequence length or layer width

// Neither undefined nor null: an optional argument that was given.
inline bool IsSet(const Napi::Value& v) { return !v.IsUndefined() && !v.IsNull(); }

// 'float32' | 'bfloat16' | 'float16'; anything else throws, naming the value.
torch::ScalarType ParseDtype(Napi::Env env, const std::string& s);

// An integral number within [min, max]; `name` says what it is in the message.
int64_t IntValue(const Napi::Value& v, const std::string& name, int64_t min, int64_t max = kMaxInt);

// Reads the named properties of one JS object; messages call a property "<what> '<key>'".
class OptionReader {
 public:
  OptionReader(Napi::Object o, std::string what) : o_(o), what_(std::move(what)) {}

  Napi::Value Get(const char* key) const { return o_.Get(key); }
  bool Has(const char* key) const { return !o_.Get(key).IsUndefined(); }
  std::string String(const char* key) const;
  int64_t Int(const char* key, int64_t min, int64_t max = kMaxInt) const;
  double Number(const char* key) const;
  bool Bool(const char* key) const;
  std::array<float, 3> Triple(const char* key) const;
  torch::ScalarType Dtype(const char* key) const { return ParseDtype(o_.Env(), String(key)); }

 private:
  std::string Name(const char* key) const { return what_ + " '" + key + "'"; }
  Napi::Object o_;
  std::string what_;
};

// The options object of a call: `v` must be an object (else `usage` is thrown); its properties are
// read as "<what> '<key>'".
OptionReader OptionsArg(const Napi::Value& v, const std::string& usage, std::string what);

// A typed array of element type E (uint8_t, int32_t, float, double); anything else throws `message`.
template <typename E>
Napi::TypedArrayOf<E> TypedArrayArg(const Napi::Value& v, const std::string& message) {
  napi_typedarray_type type;
  if constexpr (std::is_same_v<E, uint8_t>) {
    type = napi_uint8_array;
  } else if constexpr (std::is_same_v<E, int32_t>) {
    type = napi_int32_array;
  } else if constexpr (std::is_same_v<E, float>) {
    type = napi_float32_array;
  } else {
    static_assert(std::is_same_v<E, double>, "TypedArrayArg: add the element type");
    type = napi_float64_array;
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) ThrowInvalid(v.Env(), message);
  return v.As<Napi::TypedArrayOf<E>>();
}

// {data: Uint8Array of RGB bytes, width, height} -> a CPU HWC uint8 tensor, copied now (the JS
// buffer may change or be collected before the engine runs). `what` names the image in messages.
torch::Tensor ReadRgbImage(const Napi::Value& v, const std::string& what);

}  // namespace sam3
