#include "binding/args.h"

#include <cmath>
#include <cstring>

namespace sam3 {

torch::ScalarType ParseDtype(Napi::Env env, const std::string& s) {
  if (s == "float32") return torch::kFloat32;
  if (s == "bfloat16") return torch::kBFloat16;
  if (s == "float16") return torch::kFloat16;
  ThrowInvalid(env, "unsupported bundle dtype '" + s + "' (expected float32, bfloat16 or float16)");
}

int64_t IntValue(const Napi::Value& v, const std::string& name, int64_t min, int64_t max) {
  if (!v.IsNumber()) ThrowInvalid(v.Env(), name + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || d != std::floor(d) || d < static_cast<double>(min) || d > static_cast<double>(max)) {
    std::string range = min == 1 ? "a positive integer" : "an integer >= " + std::to_string(min);
    if (max != kMaxInt) range += " and <= " + std::to_string(max);
    ThrowInvalid(v.Env(), name + " must be " + range);
  }
  return static_cast<int64_t>(d);
}

std::string OptionReader::String(const char* key) const {
  Napi::Value v = o_.Get(key);
  if (!v.IsString()) ThrowInvalid(o_.Env(), Name(key) + " must be a string");
  return v.As<Napi::String>();
}

int64_t OptionReader::Int(const char* key, int64_t min, int64_t max) const { return IntValue(o_.Get(key), Name(key), min, max); }

double OptionReader::Number(const char* key) const {
  Napi::Value v = o_.Get(key);
  if (!v.IsNumber()) ThrowInvalid(o_.Env(), Name(key) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}

bool OptionReader::Bool(const char* key) const {
  Napi::Value v = o_.Get(key);
  if (!v.IsBoolean()) ThrowInvalid(o_.Env(), Name(key) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::array<float, 3> OptionReader::Triple(const char* key) const {
  Napi::Value v = o_.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) ThrowInvalid(o_.Env(), Name(key) + " must be an array of 3 numbers");
  std::array<float, 3> out{};
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < 3; i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) ThrowInvalid(o_.Env(), Name(key) + " must hold numbers");
    out[i] = e.As<Napi::Number>().FloatValue();
  }
  return out;
}

OptionReader OptionsArg(const Napi::Value& v, const std::string& usage, std::string what) {
  if (!v.IsObject()) ThrowInvalid(v.Env(), usage);
  return OptionReader(v.As<Napi::Object>(), std::move(what));
}

torch::Tensor ReadRgbImage(const Napi::Value& v, const std::string& what) {
  OptionReader r = OptionsArg(v, what + " must be an object {data, width, height}", what);
  auto u8 = TypedArrayArg<uint8_t>(r.Get("data"), what + ": data must be a Uint8Array or Buffer of RGB bytes");
  const int64_t w = r.Int("width", 1, kMaxSize);
  const int64_t h = r.Int("height", 1, kMaxSize);
  if (static_cast<int64_t>(u8.ByteLength()) != w * h * 3) {
    ThrowInvalid(v.Env(), what + " has " + std::to_string(u8.ByteLength()) + " bytes but width*height*3 = " + std::to_string(w * h * 3));
  }
  torch::Tensor t = torch::empty({h, w, 3}, torch::TensorOptions().dtype(torch::kUInt8));
  std::memcpy(t.data_ptr<uint8_t>(), u8.Data(), u8.ByteLength());
  return t;
}

}  // namespace sam3
