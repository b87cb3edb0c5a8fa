// Tracker::Interactive: interactive segmentation of an image's features (core/interactive.h).
#include <cmath>
#include <string>
#include <vector>

#include "binding/args.h"
#include "binding/js_errors.h"
#include "binding/marshal.h"
#include "binding/model_wrap.h"
#include "binding/tracker_wrap.h"
#include "core/interactive.h"

namespace sam3 {
namespace {

// One {points: Float64Array, labels: Int32Array, maskInput?: MaskLogits} of interactive()'s objects.
InteractivePrompt ReadInteractivePrompt(const Napi::Value& v, size_t index, const TrackerState& t) {
  Napi::Env env = v.Env();
  const std::string where = "interactive: objects[" + std::to_string(index) + "]";
  OptionReader o = OptionsArg(v, where + " must be an object", "interactive object");
  auto p = TypedArrayArg<double>(o.Get("points"), where + ".points must be a Float64Array of [x, y] pairs");
  auto l = TypedArrayArg<int32_t>(o.Get("labels"), where + ".labels must be an Int32Array");
  const size_t n = l.ElementLength();
  if (n == 0 || p.ElementLength() != 2 * n) ThrowInvalid(env, where + " needs at least one point, with 2 numbers per label");
  InteractivePrompt prompt;
  prompt.xy.resize(2 * n);
  prompt.labels.resize(n);
  for (size_t j = 0; j < 2 * n; j++) {
    if (!std::isfinite(p[j])) ThrowInvalid(env, where + ": point coordinates must be finite");
    prompt.xy[j] = static_cast<float>(p[j]);
  }
  for (size_t j = 0; j < n; j++) {
    if (l[j] < 0 || l[j] > 3) ThrowInvalid(env, where + ": labels are 1 / 0 for points and 2, 3 for a box's corners");
    prompt.labels[j] = l[j];
  }
  Napi::Value mv = o.Get("maskInput");
  if (IsSet(mv)) {
    prompt.mask_input = MaskLogits::Get(mv, (where + ".maskInput").c_str());
    const torch::Tensor& m = prompt.mask_input->logits;
    const int64_t s = t.config.low_res;
    if (m.dim() != 4 || m.size(0) != 1 || m.size(1) != 1 || m.size(2) != s || m.size(3) != s) {
      ThrowInvalid(env, where + ".maskInput was made by a model of another mask size");
    }
  }
  return prompt;
}

Napi::Object InteractiveResultToJs(Napi::Env env, const InteractiveResult& r) {
  Napi::Array objects = Napi::Array::New(env, r.objects.size());
  for (size_t i = 0; i < r.objects.size(); i++) {
    const InteractiveObject& obj = r.objects[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("masks", RleStrings(env, obj.masks));
    o.Set("iouScores", ToFloat32Array(env, obj.iou_scores));
    o.Set("boxes", ToFloat32Array(env, obj.boxes));
    o.Set("objectScoreLogit", static_cast<double>(obj.object_score_logit));
    o.Set("maskInput", MaskLogits::Wrap(env, obj.best));
    objects.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("objects", objects);
  out.Set("height", static_cast<double>(r.height));
  out.Set("width", static_cast<double>(r.width));
  out.Set("featureBytes", static_cast<double>(r.feature_bytes));
  out.Set("timings", TimingsToJs(env, {{"neckMs", r.neck_ms}, {"decoderMs", r.decoder_ms}, {"postprocessMs", r.postprocess_ms}, {"passes", r.passes}}));
  return out;
}

}  // namespace

Napi::Value Tracker::Interactive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "interactive");
  const char* usage = "interactive(features, objects: Array<{points, labels, maskInput?}>, options: {multimask: boolean})";
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsObject()) ThrowInvalid(env, usage);
  auto feats = ImageFeatures::Get(info[0], "interactive(features, ...)");
  CheckOwner(env, feats->owner == state->model.get(), "interactive", "these image features were made by another model");
  Napi::Array arr = info[1].As<Napi::Array>();
  if (arr.Length() == 0) ThrowInvalid(env, "interactive: at least one object is required");
  std::vector<InteractivePrompt> prompts;
  for (uint32_t i = 0; i < arr.Length(); i++) prompts.push_back(ReadInteractivePrompt(arr.Get(i), i, *state));
  const bool multimask = OptionReader(info[2].As<Napi::Object>(), "interactive option").Bool("multimask");
  return core_->Queue(
      env, "interactive",
      [state, feats, prompts = std::move(prompts), multimask] { return SegmentInteractive(*state, *feats, prompts, multimask); },
      InteractiveResultToJs);
}

}  // namespace sam3
