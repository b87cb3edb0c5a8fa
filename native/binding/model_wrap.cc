#include "binding/model_wrap.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "binding/args.h"
#include "binding/js_errors.h"
#include "binding/marshal.h"

namespace sam3 {

Napi::Function Model::Init(Napi::Env env) {
  return DefineClass(env, kClassName,
                     {
                         InstanceMethod<&Model::EncodeImages>("encodeImages"),
                         InstanceMethod<&Model::EncodeTexts>("encodeTexts"),
                         InstanceMethod<&Model::Segment>("segment"),
                         InstanceMethod<&Model::Info>("info"),
                         InstanceMethod("dispose", static_cast<Method>(&Model::Dispose)),
                         InstanceAccessor("disposed", static_cast<Method>(&Model::Disposed), nullptr),
                     });
}

Napi::Value Model::Load(const Napi::CallbackInfo& info, std::shared_ptr<EngineCore> core) {
  Napi::Env env = info.Env();
  OptionReader r = OptionsArg(info[0], "loadModel(options): options must be an object", "model option");
  ModelConfig cfg;
  cfg.backbone_path = r.String("visionBackbone");
  cfg.neck_path = r.String("visionNeck");
  cfg.text_path = r.String("textEncoder");
  cfg.head_text_path = r.String("headText");
  cfg.head_boxes_path = r.String("headTextBoxes");
  cfg.pixel_path = r.String("pixelDecoder");
  cfg.pixel_skip_path = r.String("pixelSkip");
  cfg.pixel_split_path = r.String("pixelSplit");
  if (r.Has("pixelSkipAfter")) cfg.pixel_skip_after = r.Int("pixelSkipAfter", -1);
  cfg.bundle_device = r.String("bundleDevice");
  cfg.dtype = r.Dtype("dtype");
  cfg.resolution = r.Int("resolution", 1, kMaxSize);
  cfg.mask_size = r.Int("maskSize", 1, kMaxSize);
  cfg.text_length = r.Int("textLength", 1, kMaxSize);
  cfg.hidden_size = r.Int("hiddenSize", 1, kMaxSize);
  cfg.mean = r.Triple("mean");
  cfg.std = r.Triple("std");
  for (float sd : cfg.std) {
    if (!(sd > 0)) ThrowInvalid(env, "model option 'std' must be positive");
  }
  cfg.warmup = r.Has("warmup") ? r.Get("warmup").ToBoolean().Value() : true;

  torch::Device bundle_device(torch::kCPU);
  try {
    bundle_device = torch::Device(cfg.bundle_device);
  } catch (...) {
    ThrowInvalid(env, "bundle device '" + cfg.bundle_device + "' is not a device name");
  }
  if (bundle_device.type() != core->device().type()) {
    throw MakeJsError(env, code::kDeviceMismatch,
                      "this bundle was exported for " + cfg.bundle_device + " but the engine runs on " +
                          core->device().str() +
                          ": TorchScript bakes the trace device in, so export the bundle again with --device " +
                          (core->device().is_cpu() ? std::string("cpu") : std::string("cuda")));
  }
  return SubmitLoad(info, core, "loadModel", [cfg, device = core->device()] { return LoadModel(cfg, device); });
}

Napi::Value Model::EncodeImages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "encodeImages");
  if (info.Length() < 1 || !info[0].IsArray()) {
    ThrowInvalid(env, "encodeImages(images): images must be an array of {data, width, height}");
  }
  Napi::Array arr = info[0].As<Napi::Array>();
  const uint32_t n = arr.Length();
  if (n == 0) ThrowInvalid(env, "encodeImages(images): at least one image is required");
  bool keep_backbone = false;
  if (info.Length() > 1 && info[1].IsObject()) {
    keep_backbone = info[1].As<Napi::Object>().Get("keepBackbone").ToBoolean().Value();
  }
  std::vector<torch::Tensor> pixels;
  pixels.reserve(n);
  for (uint32_t i = 0; i < n; i++) pixels.push_back(ReadRgbImage(arr.Get(i), "encodeImages(images): image " + std::to_string(i)));
  return core_->Queue(
      env, "encodeImages", [state, pixels = std::move(pixels), keep_backbone] { return sam3::EncodeImages(state, pixels, keep_backbone); },
      [](Napi::Env env, const EncodedImages& res) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("features", ImageFeatures::WrapAll(env, res.features));
        out.Set("timings", TimingsToJs(env, {{"preprocessMs", res.preprocess_ms}, {"encoderMs", res.encoder_ms}}));
        return out;
      });
}

Napi::Value Model::EncodeTexts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "encodeTexts");
  const int64_t l = state->config.text_length;
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber()) {
    ThrowInvalid(env, "encodeTexts(ids: Int32Array, mask: Uint8Array, count: number)");
  }
  const char* types = "encodeTexts(ids, mask, count): ids must be an Int32Array and mask a Uint8Array";
  auto ids = TypedArrayArg<int32_t>(info[0], types);
  auto mask = TypedArrayArg<uint8_t>(info[1], types);
  const int64_t n = IntValue(info[2], "encodeTexts: count", 1);
  if (static_cast<int64_t>(ids.ElementLength()) != n * l || static_cast<int64_t>(mask.ElementLength()) != n * l) {
    ThrowInvalid(env, "encodeTexts: ids and mask must each hold count * " + std::to_string(l) + " values");
  }
  torch::Tensor id_t = torch::empty({n, l}, torch::kLong);
  torch::Tensor mask_t = torch::empty({n, l}, torch::kLong);
  for (int64_t i = 0; i < n * l; i++) {
    id_t.data_ptr<int64_t>()[i] = ids.Data()[i];
    mask_t.data_ptr<int64_t>()[i] = mask.Data()[i] ? 1 : 0;
  }
  return core_->Queue(
      env, "encodeTexts", [state, id_t, mask_t] { return sam3::EncodeTexts(state, id_t, mask_t); },
      [](Napi::Env env, const EncodedTexts& res) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        out.Set("embeddings", TextEmbedding::WrapAll(env, res.embeddings));
        out.Set("timings", TimingsToJs(env, {{"textEncoderMs", res.text_encoder_ms}}));
        return out;
      });
}

namespace {

// One {text, boxes?, labels?} of segment()'s queries.
QuerySpec ReadQuery(const Napi::Value& v, const ModelState* model) {
  Napi::Env env = v.Env();
  if (!v.IsObject()) ThrowInvalid(env, "segment: every query must be an object");
  Napi::Object q = v.As<Napi::Object>();
  QuerySpec spec;
  spec.text = TextEmbedding::Get(q.Get("text"), "segment: query.text");
  CheckOwner(env, spec.text->owner == model, "segment", "a text embedding was made by another model");
  Napi::Value bv = q.Get("boxes");
  if (!IsSet(bv)) return spec;
  auto b = TypedArrayArg<double>(bv, "segment: query.boxes must be a Float64Array of [x, y, w, h] values");
  if (b.ElementLength() % 4 != 0) ThrowInvalid(env, "segment: query.boxes length must be a multiple of 4");
  const size_t k = b.ElementLength() / 4;
  for (size_t j = 0; j < k * 4; j++) {
    if (!std::isfinite(b[j])) ThrowInvalid(env, "segment: box coordinates must be finite numbers");
    spec.boxes.push_back(b[j]);
  }
  spec.labels.assign(k, 1);
  Napi::Value lv = q.Get("labels");
  if (IsSet(lv)) {
    const char* message = "segment: query.labels must be a Uint8Array with one label per box";
    auto lab = TypedArrayArg<uint8_t>(lv, message);
    if (lab.ElementLength() != k) ThrowInvalid(env, message);
    for (size_t j = 0; j < k; j++) spec.labels[j] = lab[j] ? 1 : 0;
  }
  return spec;
}

}  // namespace

Napi::Value Model::Segment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "segment");
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsNumber()) {
    ThrowInvalid(env, "segment(features, queries: Array<{text, boxes?, labels?}>, threshold: number)");
  }
  auto feats = ImageFeatures::Get(info[0], "segment(features, ...)");
  CheckOwner(env, feats->owner == state.get(), "segment", "these image features were made by another model");
  SegmentOptions opts;
  opts.threshold = info[2].As<Napi::Number>().DoubleValue();
  if (!(opts.threshold >= 0 && opts.threshold <= 1)) ThrowInvalid(env, "segment: threshold must be within [0, 1]");
  if (info.Length() > 3 && info[3].IsObject()) {
    Napi::Object o = info[3].As<Napi::Object>();
    if (o.Get("maskThreshold").IsNumber()) opts.mask_threshold = o.Get("maskThreshold").As<Napi::Number>().DoubleValue();
    if (o.Get("maxBatch").IsNumber()) opts.max_batch = std::max<int64_t>(1, o.Get("maxBatch").As<Napi::Number>().Int64Value());
  }
  Napi::Array qs = info[1].As<Napi::Array>();
  if (qs.Length() == 0) ThrowInvalid(env, "segment: at least one query is required");
  std::vector<QuerySpec> queries;
  for (uint32_t i = 0; i < qs.Length(); i++) queries.push_back(ReadQuery(qs.Get(i), state.get()));
  return core_->Queue(
      env, "segment", [state, feats, queries = std::move(queries), opts] { return sam3::Segment(*state, *feats, queries, opts); },
      SegmentResultToJs);
}

Napi::Value Model::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "info");
  Napi::Object o = Napi::Object::New(env);
  o.Set("device", state->device.str());
  o.Set("dtype", std::string(c10::toString(state->config.dtype)));
  o.Set("resolution", static_cast<double>(state->config.resolution));
  o.Set("maskSize", static_cast<double>(state->config.mask_size));
  o.Set("loadMs", state->load_ms);
  o.Set("warmupMs", state->warmup_ms);
  return o;
}

// ---------------------------------------------------------------------------------------------
// The handles Model's jobs make

Napi::Function ImageFeatures::Init(Napi::Env env) {
  auto props = CommonProperties();
  props.push_back(InstanceAccessor<&ImageFeatures::Width>("width"));
  props.push_back(InstanceAccessor<&ImageFeatures::Height>("height"));
  props.push_back(InstanceAccessor<&ImageFeatures::PixelSkip>("pixelSkip"));
  return DefineClass(env, kClassName, props);
}

ImageFeatures::ImageFeatures(const Napi::CallbackInfo& info) : DataHandle(info) {
  width_ = state_->width;
  height_ = state_->height;
}

Napi::Value ImageFeatures::Width(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(width_)); }
Napi::Value ImageFeatures::Height(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(height_)); }
// Whether Segment has computed pixel_skip for these features (false once disposed).
Napi::Value ImageFeatures::PixelSkip(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), state_ && state_->skip_convolved.load());
}

Napi::Function TextEmbedding::Init(Napi::Env env) { return DefineClass(env, kClassName, CommonProperties()); }

}  // namespace sam3
