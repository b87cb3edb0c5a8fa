#include "binding/marshal.h"

#include <algorithm>

namespace sam3 {

Napi::String AsciiString(Napi::Env env, const std::string& s) {
  napi_value v;
  NAPI_THROW_IF_FAILED(env, napi_create_string_latin1(env, s.data(), s.size(), &v), Napi::String());
  return Napi::String(env, v);
}

Napi::Float32Array ToFloat32Array(Napi::Env env, const std::vector<float>& v) {
  auto a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

Napi::Object TimingsToJs(Napi::Env env, std::initializer_list<std::pair<const char*, double>> timings) {
  Napi::Object o = Napi::Object::New(env);
  for (const auto& [name, value] : timings) o.Set(name, value);
  return o;
}

Napi::Array RleStrings(Napi::Env env, const std::vector<std::string>& masks) {
  Napi::Array out = Napi::Array::New(env, masks.size());
  for (size_t i = 0; i < masks.size(); i++) out.Set(static_cast<uint32_t>(i), AsciiString(env, masks[i]));
  return out;
}

Napi::Object QueryResultToJs(Napi::Env env, const QueryResult& q, int64_t height, int64_t width) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("scores", ToFloat32Array(env, q.scores));
  o.Set("boxes", ToFloat32Array(env, q.boxes));
  o.Set("masks", RleStrings(env, q.masks));
  o.Set("height", static_cast<double>(height));
  o.Set("width", static_cast<double>(width));
  return o;
}

Napi::Object SegmentResultToJs(Napi::Env env, const SegmentResult& r) {
  Napi::Object res = Napi::Object::New(env);
  Napi::Array arr = Napi::Array::New(env, r.queries.size());
  for (size_t i = 0; i < r.queries.size(); i++) arr.Set(static_cast<uint32_t>(i), QueryResultToJs(env, r.queries[i], r.height, r.width));
  res.Set("queries", arr);
  const SegmentTimings& t = r.timings;
  res.Set("timings", TimingsToJs(env, {
                                          {"headMs", t.head_ms},
                                          {"postprocessMs", t.postprocess_ms},
                                          {"headPasses", static_cast<double>(t.passes)},
                                          {"pixelDecoderMs", t.pixel_ms},
                                          {"pixelDecoderRows", static_cast<double>(t.pixel_rows)},
                                          // of which through pixel_split
                                          {"pixelSplitRows", static_cast<double>(t.split_rows)},
                                          // pixel_skip's one run on this image, if in this call
                                          {"pixelSkipMs", t.skip_ms},
                                      }));
  return res;
}

Napi::Object StepResultToJs(Napi::Env env, const StepResult& s) {
  Napi::Object o = Napi::Object::New(env);
  if (s.need_frame) {
    o.Set("needFrame", true);
    return o;
  }
  o.Set("frame", static_cast<double>(s.frame));
  Napi::Array ids = Napi::Array::New(env, s.ids.size());
  for (size_t i = 0; i < s.ids.size(); i++) ids.Set(static_cast<uint32_t>(i), static_cast<double>(s.ids[i]));
  o.Set("objIds", ids);
  o.Set("masks", RleStrings(env, s.masks));
  o.Set("boxes", ToFloat32Array(env, s.boxes));
  o.Set("scores", ToFloat32Array(env, s.scores));
  o.Set("logits", ToFloat32Array(env, s.logits));
  o.Set("memoryBytes", static_cast<double>(s.memory_bytes));
  o.Set("height", static_cast<double>(s.height));
  o.Set("width", static_cast<double>(s.width));
  return o;
}

}  // namespace sam3
