#include "model.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "addon.h"
#include "preprocess.h"
#include "rle.h"

namespace sam3 {
namespace {

namespace F = torch::nn::functional;

// The neck returns (f0, f1, f2, p2, e0); a head pass takes (f2, p2, e0, text, mask[, boxes, labels])
// and returns (pred_logits, pred_boxes, presence_logits, mask_emb, mask_bias, visual); the pixel
// decoder takes (f0, f1, visual) and returns pixel_emb; pixel_skip takes (f0, f1) and returns
// (s0, s1), and pixel_split takes (s0, s1, visual) and returns pixel_emb (bundle format 6).
constexpr size_t kNeckOutputs = 5;
constexpr size_t kHeadOutputs = 6;

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

torch::ScalarType ParseDtype(Napi::Env env, const std::string& s) {
  if (s == "float32") return torch::kFloat32;
  if (s == "bfloat16") return torch::kBFloat16;
  if (s == "float16") return torch::kFloat16;
  ThrowInvalid(env, "unsupported bundle dtype '" + s + "' (expected float32, bfloat16 or float16)");
}

std::string GetString(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) ThrowInvalid(o.Env(), std::string("model option '") + key + "' must be a string");
  return v.As<Napi::String>();
}

int64_t GetPositiveInt(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) ThrowInvalid(o.Env(), std::string("model option '") + key + "' must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 1) || d != std::floor(d) || d > 1e6) {
    ThrowInvalid(o.Env(), std::string("model option '") + key + "' must be a positive integer");
  }
  return static_cast<int64_t>(d);
}

std::array<float, 3> GetTriple(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) {
    ThrowInvalid(o.Env(), std::string("model option '") + key + "' must be an array of 3 numbers");
  }
  std::array<float, 3> out{};
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < 3; i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsNumber()) ThrowInvalid(o.Env(), std::string("model option '") + key + "' must hold numbers");
    out[i] = e.As<Napi::Number>().FloatValue();
  }
  return out;
}

torch::jit::Module LoadPiece(const std::string& path, const torch::Device& device, const char* what) {
  try {
    torch::jit::Module m = torch::jit::load(path, device);
    m.eval();
    return m;
  } catch (...) {
    throw CurrentError(code::kModelLoad, std::string("cannot load the ") + what + " from " + path);
  }
}

std::vector<torch::Tensor> RunTuple(torch::jit::Module& m, std::vector<torch::jit::IValue> inputs,
                                    size_t expected, const char* what) {
  torch::jit::IValue out = m.forward(std::move(inputs));
  std::vector<torch::Tensor> tensors;
  if (out.isTuple()) {
    for (const auto& e : out.toTupleRef().elements()) tensors.push_back(e.toTensor());
  } else if (out.isTensor()) {
    tensors.push_back(out.toTensor());
  }
  if (tensors.size() != expected) {
    throw NativeError(code::kModelLoad, std::string(what) + " returned " + std::to_string(tensors.size()) +
                                            " outputs, expected " + std::to_string(expected) +
                                            ": the bundle does not match this version of the server");
  }
  return tensors;
}

int64_t TensorBytes(const torch::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

torch::Tensor Preprocess(const ModelState& s, const torch::Tensor& hwc_cpu) {
  return PreprocessRgb(hwc_cpu, s.device, s.config.resolution, s.mean, s.std, s.config.dtype);
}

struct QueryOut {
  std::vector<float> scores;
  std::vector<float> boxes;  // xywh normalised
  std::vector<std::string> masks;
  torch::Tensor kept;        // indices of the kept queries, by descending score (until the masks are made)
};

// One prompt's outputs of a head pass: threshold, sort by score, boxes to xywh. Leaves the kept
// queries' indices in out.kept (empty: nothing found, and the pixel decoder need not run).
QueryOut SelectQueries(const torch::Tensor& logits, const torch::Tensor& boxes_xyxy, const torch::Tensor& presence,
                       double threshold) {
  QueryOut out;
  torch::Tensor scores = torch::sigmoid(logits.to(torch::kFloat32)) * torch::sigmoid(presence.to(torch::kFloat32));
  torch::Tensor keep = torch::nonzero(scores > threshold).flatten();
  if (keep.numel() == 0) return out;
  torch::Tensor kept = scores.index_select(0, keep);
  auto sorted = torch::sort(kept, /*stable=*/true, /*dim=*/0, /*descending=*/true);
  torch::Tensor idx = keep.index_select(0, std::get<1>(sorted));
  torch::Tensor sel_scores = std::get<0>(sorted).to(torch::kCPU).contiguous();
  torch::Tensor b = boxes_xyxy.index_select(0, idx).to(torch::kFloat32);
  torch::Tensor xywh =
      torch::stack({b.select(1, 0), b.select(1, 1), b.select(1, 2) - b.select(1, 0), b.select(1, 3) - b.select(1, 1)}, 1)
          .to(torch::kCPU)
          .contiguous();
  const int64_t k = idx.numel();
  out.scores.assign(sel_scores.data_ptr<float>(), sel_scores.data_ptr<float>() + k);
  out.boxes.assign(xywh.data_ptr<float>(), xywh.data_ptr<float>() + k * 4);
  out.kept = idx;
  return out;
}

// The kept queries' masks: pred_masks[q] = mask_emb[q] . pixel_emb + mask_bias[q] (a few of the 200
// queries, each a [C] x [C, M*M] product), upsampled to the original size, binarised, RLE-encoded.
void AddMasks(QueryOut& out, const torch::Tensor& mask_emb, const torch::Tensor& mask_bias, const torch::Tensor& pixel_emb,
              double mask_threshold, int64_t height, int64_t width) {
  const torch::Tensor idx = out.kept;
  out.kept = torch::Tensor();
  const int64_t k = idx.numel();
  const int64_t mh = pixel_emb.size(-2), mw = pixel_emb.size(-1);
  torch::Tensor mask_logits =
      torch::mm(mask_emb.index_select(0, idx), pixel_emb.reshape({pixel_emb.size(0), mh * mw})).view({k, mh, mw}) +
      mask_bias.index_select(0, idx).view({k, 1, 1});
  torch::Tensor probs = torch::sigmoid(mask_logits.to(torch::kFloat32));
  // Bound the size of the upsampled block (a 4K image times 200 masks would not fit).
  const int64_t per_mask = std::max<int64_t>(1, height * width);
  const int64_t chunk = std::max<int64_t>(1, (int64_t{1} << 25) / per_mask);
  out.masks.reserve(k);
  for (int64_t start = 0; start < k; start += chunk) {
    const int64_t n = std::min(chunk, k - start);
    torch::Tensor up = F::interpolate(probs.narrow(0, start, n).unsqueeze(0),
                                      F::InterpolateFuncOptions()
                                          .size(std::vector<int64_t>{height, width})
                                          .mode(torch::kBilinear)
                                          .align_corners(false))
                           .squeeze(0);
    torch::Tensor bin = (up > mask_threshold).to(torch::kUInt8).to(torch::kCPU).contiguous();
    const uint8_t* base = bin.data_ptr<uint8_t>();
    for (int64_t i = 0; i < n; i++) {
      out.masks.push_back(RleEncodeRowMajor(base + i * height * width, height, width));
    }
  }
}

Napi::Object QueryToJs(Napi::Env env, const QueryOut& q, int64_t height, int64_t width) {
  Napi::Object o = Napi::Object::New(env);
  auto scores = Napi::Float32Array::New(env, q.scores.size());
  std::copy(q.scores.begin(), q.scores.end(), scores.Data());
  auto boxes = Napi::Float32Array::New(env, q.boxes.size());
  std::copy(q.boxes.begin(), q.boxes.end(), boxes.Data());
  Napi::Array masks = Napi::Array::New(env, q.masks.size());
  for (size_t i = 0; i < q.masks.size(); i++) masks.Set(static_cast<uint32_t>(i), AsciiString(env, q.masks[i]));
  o.Set("scores", scores);
  o.Set("boxes", boxes);
  o.Set("masks", masks);
  o.Set("height", static_cast<double>(height));
  o.Set("width", static_cast<double>(width));
  return o;
}

}  // namespace

torch::Tensor RunBackbone(ModelState& s, const torch::Tensor& px) {
  return RunTuple(s.backbone, {px}, 1, "vision backbone")[0];
}

namespace {

void Warmup(ModelState& s) {
  const int64_t r = s.config.resolution;
  const int64_t l = s.config.text_length;
  auto fopts = torch::TensorOptions().device(s.device);
  torch::Tensor px = torch::zeros({1, 3, r, r}, fopts.dtype(s.config.dtype));
  auto v = RunTuple(s.neck, {RunBackbone(s, px)}, kNeckOutputs, "vision neck");
  s.pos = v[3].narrow(0, 0, 1).contiguous();
  if (s.config.mask_size != v[0].size(-1)) {
    throw NativeError(code::kModelLoad, "bundle manifest says mask_size " + std::to_string(s.config.mask_size) +
                                            " but the vision encoder produces " + std::to_string(v[0].size(-1)));
  }
  if (!s.config.warmup) return;
  torch::Tensor ids = torch::zeros({1, l}, fopts.dtype(torch::kLong));
  torch::Tensor am = torch::ones({1, l}, fopts.dtype(torch::kLong));
  auto t = RunTuple(s.text, {ids, am}, 1, "text encoder");
  torch::Tensor mask = am.to(torch::kBool);
  auto h = RunTuple(s.head_text, {v[2], v[3], v[4], t[0], mask}, kHeadOutputs, "text head");
  RunTuple(s.pixel, {v[0], v[1], h[5]}, 1, "pixel decoder");
  auto sk = RunTuple(s.pixel_skip, {v[0], v[1]}, 2, "pixel decoder (skip)");
  RunTuple(s.pixel_split, {sk[0], sk[1], h[5]}, 1, "pixel decoder (split)");
  torch::Tensor boxes = torch::full({1, 1, 4}, 0.5, fopts.dtype(s.config.dtype));
  torch::Tensor labels = torch::ones({1, 1}, fopts.dtype(torch::kLong));
  RunTuple(s.head_boxes, {v[2], v[3], v[4], t[0], mask, boxes, labels}, kHeadOutputs, "box head");
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Model

Napi::Function Model::Init(Napi::Env env) {
  return DefineClass(env, "Model",
                     {
                         InstanceMethod<&Model::EncodeImages>("encodeImages"),
                         InstanceMethod<&Model::EncodeTexts>("encodeTexts"),
                         InstanceMethod<&Model::Segment>("segment"),
                         InstanceMethod<&Model::Info>("info"),
                         InstanceMethod<&Model::Dispose>("dispose"),
                         InstanceAccessor<&Model::Disposed>("disposed"),
                     });
}

Model::Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 3 || !info[0].IsExternal() || !info[1].IsExternal() || !info[2].IsObject()) {
    ThrowInvalid(env, "Model cannot be constructed directly: use engine.loadModel()");
  }
  state_ = *info[0].As<Napi::External<std::shared_ptr<ModelState>>>().Data();
  core_ = *info[1].As<Napi::External<std::shared_ptr<EngineCore>>>().Data();
  engine_ = Napi::Persistent(info[2].As<Napi::Object>());
}

Napi::Value Model::Load(const Napi::CallbackInfo& info, std::shared_ptr<EngineCore> core) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowInvalid(env, "loadModel(options): options must be an object");
  Napi::Object o = info[0].As<Napi::Object>();
  ModelConfig cfg;
  cfg.backbone_path = GetString(o, "visionBackbone");
  cfg.neck_path = GetString(o, "visionNeck");
  cfg.text_path = GetString(o, "textEncoder");
  cfg.head_text_path = GetString(o, "headText");
  cfg.head_boxes_path = GetString(o, "headTextBoxes");
  cfg.pixel_path = GetString(o, "pixelDecoder");
  cfg.pixel_skip_path = GetString(o, "pixelSkip");
  cfg.pixel_split_path = GetString(o, "pixelSplit");
  Napi::Value psa = o.Get("pixelSkipAfter");
  if (!psa.IsUndefined()) {
    if (!psa.IsNumber()) ThrowInvalid(env, "model option 'pixelSkipAfter' must be a number");
    const double n = psa.As<Napi::Number>().DoubleValue();
    if (!(n >= -1) || n != std::floor(n)) ThrowInvalid(env, "model option 'pixelSkipAfter' must be an integer >= -1");
    cfg.pixel_skip_after = static_cast<int64_t>(n);
  }
  cfg.bundle_device = GetString(o, "bundleDevice");
  cfg.dtype = ParseDtype(env, GetString(o, "dtype"));
  cfg.resolution = GetPositiveInt(o, "resolution");
  cfg.mask_size = GetPositiveInt(o, "maskSize");
  cfg.text_length = GetPositiveInt(o, "textLength");
  cfg.hidden_size = GetPositiveInt(o, "hiddenSize");
  cfg.mean = GetTriple(o, "mean");
  cfg.std = GetTriple(o, "std");
  for (float sd : cfg.std) {
    if (!(sd > 0)) ThrowInvalid(env, "model option 'std' must be positive");
  }
  Napi::Value w = o.Get("warmup");
  cfg.warmup = w.IsUndefined() ? true : w.ToBoolean().Value();

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

  const torch::Device device = core->device();
  Work work = [cfg, device, core]() -> Finisher {
    auto state = std::make_shared<ModelState>();
    state->config = cfg;
    state->device = device;
    auto t0 = Clock::now();
    state->backbone = LoadPiece(cfg.backbone_path, device, "vision backbone");
    state->neck = LoadPiece(cfg.neck_path, device, "vision neck");
    state->text = LoadPiece(cfg.text_path, device, "text encoder");
    state->head_text = LoadPiece(cfg.head_text_path, device, "text detector head");
    state->head_boxes = LoadPiece(cfg.head_boxes_path, device, "text+box detector head");
    state->pixel = LoadPiece(cfg.pixel_path, device, "pixel decoder");
    state->pixel_skip = LoadPiece(cfg.pixel_skip_path, device, "pixel decoder (skip)");
    state->pixel_split = LoadPiece(cfg.pixel_split_path, device, "pixel decoder (split)");
    auto fopts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
    state->mean = torch::tensor(std::vector<float>(cfg.mean.begin(), cfg.mean.end()), fopts).view({1, 3, 1, 1});
    state->std = torch::tensor(std::vector<float>(cfg.std.begin(), cfg.std.end()), fopts).view({1, 3, 1, 1});
    state->load_ms = MsSince(t0);
    auto t1 = Clock::now();
    try {
      Warmup(*state);
    } catch (...) {
      throw CurrentError(code::kModelLoad, "the bundle failed its warm-up run (wrong or corrupt bundle?)");
    }
    state->warmup_ms = MsSince(t1);
    return [state, core](Napi::Env env, Napi::Object engine) -> Napi::Value {
      auto* data = AddonData::Get(env);
      auto* ext_state = new std::shared_ptr<ModelState>(state);
      auto* ext_core = new std::shared_ptr<EngineCore>(core);
      return data->model_ctor.New({
          Napi::External<std::shared_ptr<ModelState>>::New(env, ext_state,
                                                           [](Napi::Env, std::shared_ptr<ModelState>* p) { delete p; }),
          Napi::External<std::shared_ptr<EngineCore>>::New(env, ext_core,
                                                           [](Napi::Env, std::shared_ptr<EngineCore>* p) { delete p; }),
          engine,
      });
    };
  };
  return core->Submit(env, std::move(work), "loadModel", info.This().As<Napi::Object>());
}

std::shared_ptr<ModelState> Model::StateOf(const Napi::Value& v, const char* what) {
  Napi::Env env = v.Env();
  if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(AddonData::Get(env)->model_ctor.Value())) {
    ThrowInvalid(env, std::string(what) + " must be a Model loaded on this engine");
  }
  return Napi::ObjectWrap<Model>::Unwrap(v.As<Napi::Object>())->Live(env, what);
}

std::shared_ptr<ModelState> Model::Live(Napi::Env env, const char* op) {
  if (!state_) throw MakeJsError(env, code::kDisposed, std::string(op) + ": the model has been disposed");
  return state_;
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
  // Copy the pixels now: the JS buffers may change or be collected before the engine runs.
  std::vector<torch::Tensor> pixels;
  pixels.reserve(n);
  for (uint32_t i = 0; i < n; i++) {
    Napi::Value v = arr.Get(i);
    if (!v.IsObject()) ThrowInvalid(env, "encodeImages(images): every image must be an object");
    Napi::Object o = v.As<Napi::Object>();
    Napi::Value data = o.Get("data");
    if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      ThrowInvalid(env, "encodeImages(images): data must be a Uint8Array or Buffer of RGB bytes");
    }
    const int64_t w = GetPositiveInt(o, "width");
    const int64_t h = GetPositiveInt(o, "height");
    auto u8 = data.As<Napi::Uint8Array>();
    if (static_cast<int64_t>(u8.ByteLength()) != w * h * 3) {
      ThrowInvalid(env, "encodeImages(images): image " + std::to_string(i) + " has " +
                            std::to_string(u8.ByteLength()) + " bytes but width*height*3 = " +
                            std::to_string(w * h * 3));
    }
    torch::Tensor t = torch::empty({h, w, 3}, torch::TensorOptions().dtype(torch::kUInt8));
    std::memcpy(t.data_ptr<uint8_t>(), u8.Data(), u8.ByteLength());
    pixels.push_back(std::move(t));
  }
  Work work = [state, pixels = std::move(pixels), keep_backbone]() -> Finisher {
    auto t0 = Clock::now();
    std::vector<torch::Tensor> batch;
    batch.reserve(pixels.size());
    for (const auto& p : pixels) batch.push_back(Preprocess(*state, p));
    torch::Tensor px = torch::cat(batch, 0);
    batch.clear();
    const double pre_ms = MsSince(t0);
    auto t1 = Clock::now();
    torch::Tensor hidden = RunBackbone(*state, px);
    auto out = RunTuple(state->neck, {hidden}, kNeckOutputs, "vision neck");
    const double enc_ms = MsSince(t1);
    const int64_t n = static_cast<int64_t>(pixels.size());
    std::vector<std::shared_ptr<FeaturesState>> feats;
    for (int64_t i = 0; i < n; i++) {
      auto f = std::make_shared<FeaturesState>();
      for (int lvl = 0; lvl < 3; lvl++) {
        torch::Tensor t = out[lvl].narrow(0, i, 1);
        // A slice would keep the whole batch alive: copy when batched so each handle owns its memory.
        f->feats.push_back(n == 1 ? t : t.clone());
        f->bytes += TensorBytes(f->feats.back());
      }
      {
        torch::Tensor t = out[4].narrow(0, i, 1);
        f->detr_first = n == 1 ? t : t.clone();
        f->bytes += TensorBytes(f->detr_first);
      }
      if (keep_backbone) {
        torch::Tensor b = hidden.narrow(0, i, 1);
        f->backbone = n == 1 ? b : b.clone();
        f->bytes += TensorBytes(f->backbone);
      }
      f->height = pixels[i].size(0);
      f->width = pixels[i].size(1);
      f->owner = state.get();
      feats.push_back(std::move(f));
    }
    return [feats, pre_ms, enc_ms](Napi::Env env, Napi::Object) -> Napi::Value {
      Napi::Object res = Napi::Object::New(env);
      Napi::Array handles = Napi::Array::New(env, feats.size());
      for (size_t i = 0; i < feats.size(); i++) handles.Set(static_cast<uint32_t>(i), ImageFeatures::Wrap(env, feats[i]));
      res.Set("features", handles);
      Napi::Object timings = Napi::Object::New(env);
      timings.Set("preprocessMs", pre_ms);
      timings.Set("encoderMs", enc_ms);
      res.Set("timings", timings);
      return res;
    };
  };
  return core_->Submit(env, std::move(work), "encodeImages");
}

Napi::Value Model::EncodeTexts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "encodeTexts");
  const int64_t l = state->config.text_length;
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber()) {
    ThrowInvalid(env, "encodeTexts(ids: Int32Array, mask: Uint8Array, count: number)");
  }
  if (info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    ThrowInvalid(env, "encodeTexts(ids, mask, count): ids must be an Int32Array and mask a Uint8Array");
  }
  auto ids = info[0].As<Napi::Int32Array>();
  auto mask = info[1].As<Napi::Uint8Array>();
  const double nd = info[2].As<Napi::Number>().DoubleValue();
  if (!(nd >= 1) || nd != std::floor(nd)) ThrowInvalid(env, "encodeTexts: count must be a positive integer");
  const int64_t n = static_cast<int64_t>(nd);
  if (static_cast<int64_t>(ids.ElementLength()) != n * l || static_cast<int64_t>(mask.ElementLength()) != n * l) {
    ThrowInvalid(env, "encodeTexts: ids and mask must each hold count * " + std::to_string(l) + " values");
  }
  torch::Tensor id_t = torch::empty({n, l}, torch::kLong);
  torch::Tensor mask_t = torch::empty({n, l}, torch::kLong);
  for (int64_t i = 0; i < n * l; i++) {
    id_t.data_ptr<int64_t>()[i] = ids.Data()[i];
    mask_t.data_ptr<int64_t>()[i] = mask.Data()[i] ? 1 : 0;
  }
  Work work = [state, id_t, mask_t, n]() -> Finisher {
    auto t0 = Clock::now();
    torch::Tensor ids_d = id_t.to(state->device);
    torch::Tensor mask_d = mask_t.to(state->device);
    auto out = RunTuple(state->text, {ids_d, mask_d}, 1, "text encoder");
    std::vector<std::shared_ptr<TextState>> texts;
    for (int64_t i = 0; i < n; i++) {
      auto t = std::make_shared<TextState>();
      t->features = n == 1 ? out[0] : out[0].narrow(0, i, 1).clone();
      t->mask = mask_d.narrow(0, i, 1).to(torch::kBool);
      t->bytes = TensorBytes(t->features) + TensorBytes(t->mask);
      t->owner = state.get();
      texts.push_back(std::move(t));
    }
    const double ms = MsSince(t0);
    return [texts, ms](Napi::Env env, Napi::Object) -> Napi::Value {
      Napi::Object res = Napi::Object::New(env);
      Napi::Array handles = Napi::Array::New(env, texts.size());
      for (size_t i = 0; i < texts.size(); i++) handles.Set(static_cast<uint32_t>(i), TextEmbedding::Wrap(env, texts[i]));
      res.Set("embeddings", handles);
      Napi::Object timings = Napi::Object::New(env);
      timings.Set("textEncoderMs", ms);
      res.Set("timings", timings);
      return res;
    };
  };
  return core_->Submit(env, std::move(work), "encodeTexts");
}

namespace {
struct QuerySpec {
  std::shared_ptr<TextState> text;
  std::vector<double> boxes;  // xywh normalised, 4 per box
  std::vector<int64_t> labels;
};
}  // namespace

Napi::Value Model::Segment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "segment");
  if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsNumber()) {
    ThrowInvalid(env, "segment(features, queries: Array<{text, boxes?, labels?}>, threshold: number)");
  }
  auto feats = ImageFeatures::Get(info[0], "segment(features, ...)");
  if (feats->owner != state.get()) ThrowInvalid(env, "segment: these image features were made by another model");
  const double threshold = info[2].As<Napi::Number>().DoubleValue();
  if (!(threshold >= 0 && threshold <= 1)) ThrowInvalid(env, "segment: threshold must be within [0, 1]");
  double mask_threshold = 0.5;
  int64_t max_batch = 16;
  if (info.Length() > 3 && info[3].IsObject()) {
    Napi::Object o = info[3].As<Napi::Object>();
    if (o.Get("maskThreshold").IsNumber()) mask_threshold = o.Get("maskThreshold").As<Napi::Number>().DoubleValue();
    if (o.Get("maxBatch").IsNumber()) max_batch = std::max<int64_t>(1, o.Get("maxBatch").As<Napi::Number>().Int64Value());
  }
  Napi::Array qs = info[1].As<Napi::Array>();
  if (qs.Length() == 0) ThrowInvalid(env, "segment: at least one query is required");
  std::vector<QuerySpec> queries;
  for (uint32_t i = 0; i < qs.Length(); i++) {
    Napi::Value v = qs.Get(i);
    if (!v.IsObject()) ThrowInvalid(env, "segment: every query must be an object");
    Napi::Object q = v.As<Napi::Object>();
    QuerySpec spec;
    spec.text = TextEmbedding::Get(q.Get("text"), "segment: query.text");
    if (spec.text->owner != state.get()) ThrowInvalid(env, "segment: a text embedding was made by another model");
    Napi::Value bv = q.Get("boxes");
    if (!bv.IsUndefined() && !bv.IsNull()) {
      if (!bv.IsTypedArray() || bv.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
        ThrowInvalid(env, "segment: query.boxes must be a Float64Array of [x, y, w, h] values");
      }
      auto b = bv.As<Napi::Float64Array>();
      if (b.ElementLength() % 4 != 0) ThrowInvalid(env, "segment: query.boxes length must be a multiple of 4");
      const size_t k = b.ElementLength() / 4;
      for (size_t j = 0; j < k * 4; j++) {
        if (!std::isfinite(b[j])) ThrowInvalid(env, "segment: box coordinates must be finite numbers");
        spec.boxes.push_back(b[j]);
      }
      spec.labels.assign(k, 1);
      Napi::Value lv = q.Get("labels");
      if (!lv.IsUndefined() && !lv.IsNull()) {
        if (!lv.IsTypedArray() || lv.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
            lv.As<Napi::Uint8Array>().ElementLength() != k) {
          ThrowInvalid(env, "segment: query.labels must be a Uint8Array with one label per box");
        }
        auto lab = lv.As<Napi::Uint8Array>();
        for (size_t j = 0; j < k; j++) spec.labels[j] = lab[j] ? 1 : 0;
      }
    }
    queries.push_back(std::move(spec));
  }

  Work work = [state, feats, queries = std::move(queries), threshold, mask_threshold, max_batch]() -> Finisher {
    const ModelState& s = *state;
    std::vector<QueryOut> results(queries.size());
    double head_ms = 0, post_ms = 0, pixel_ms = 0, skip_ms = 0;
    int passes = 0;
    int64_t pixel_rows = 0, split_rows = 0;
    auto run_group = [&](const std::vector<size_t>& group, bool with_boxes) {
      for (size_t start = 0; start < group.size(); start += static_cast<size_t>(max_batch)) {
        const size_t end = std::min(group.size(), start + static_cast<size_t>(max_batch));
        const int64_t b = static_cast<int64_t>(end - start);
        std::vector<torch::jit::IValue> in;
        in.push_back(feats->feats[2].expand({b, -1, -1, -1}).contiguous());
        in.push_back(s.pos.expand({b, -1, -1, -1}).contiguous());
        in.push_back(feats->detr_first.expand({b, -1, -1}).contiguous());
        std::vector<torch::Tensor> tf, tm;
        for (size_t i = start; i < end; i++) {
          tf.push_back(queries[group[i]].text->features);
          tm.push_back(queries[group[i]].text->mask);
        }
        in.push_back(torch::cat(tf, 0));
        in.push_back(torch::cat(tm, 0));
        if (with_boxes) {
          size_t kmax = 0;
          for (size_t i = start; i < end; i++) kmax = std::max(kmax, queries[group[i]].labels.size());
          // Rows with fewer boxes are padded as Sam3Processor pads them: box (-10, -10, 0, 0) in
          // cxcywh with label -10, which Sam3 masks out.
          std::vector<float> boxes(b * kmax * 4, 0.0f);
          for (size_t i = 0; i < boxes.size(); i += 4) boxes[i] = boxes[i + 1] = -10.0f;
          std::vector<int64_t> labels(b * kmax, -10);
          for (size_t i = start; i < end; i++) {
            const QuerySpec& q = queries[group[i]];
            const size_t row = i - start;
            for (size_t j = 0; j < q.labels.size(); j++) {
              const double x = q.boxes[j * 4], y = q.boxes[j * 4 + 1], w = q.boxes[j * 4 + 2], h = q.boxes[j * 4 + 3];
              float* dst = &boxes[(row * kmax + j) * 4];
              // [x, y, w, h] -> [cx, cy, w, h], computed in double like the reference processor.
              dst[0] = static_cast<float>(x + w / 2);
              dst[1] = static_cast<float>(y + h / 2);
              dst[2] = static_cast<float>(w);
              dst[3] = static_cast<float>(h);
              labels[row * kmax + j] = q.labels[j];
            }
          }
          // clone(): from_blob does not own the vectors, and .to() is a no-op on the CPU, so the
          // tensors would otherwise point at stack vectors that die at the end of this block.
          in.push_back(torch::from_blob(boxes.data(), {b, static_cast<int64_t>(kmax), 4}, torch::kFloat32)
                           .clone()
                           .to(s.device, s.config.dtype));
          in.push_back(torch::from_blob(labels.data(), {b, static_cast<int64_t>(kmax)}, torch::kLong).clone().to(s.device));
        }
        auto t0 = Clock::now();
        auto out = RunTuple(with_boxes ? state->head_boxes : state->head_text, std::move(in), kHeadOutputs,
                            with_boxes ? "box head" : "text head");
        head_ms += MsSince(t0);
        passes++;
        auto t1 = Clock::now();
        std::vector<int64_t> found;  // rows of this pass with a query above the threshold
        for (int64_t r = 0; r < b; r++) {
          QueryOut& q = results[group[start + r]];
          q = SelectQueries(out[0][r], out[1][r], out[2][r], threshold);
          if (q.kept.defined()) found.push_back(r);
        }
        post_ms += MsSince(t1);
        if (found.empty()) continue;
        // The pixel decoder, for the prompts that found something only (the image's skip features
        // broadcast over them). Each of its stages is conv(up(prev) + skip) = conv(up(prev)) +
        // conv(skip): once these features have decoded pixel_skip_after rows, conv(skip) is computed
        // once (pixel_skip) and kept in place of the skip features, and from then on every row runs
        // pixel_split (~35% less a row on a CPU). A one-prompt image never pays for pixel_skip.
        const int64_t k = static_cast<int64_t>(found.size());
        const int64_t after = s.config.pixel_skip_after;
        if (!feats->skip_convolved && after >= 0 && feats->pixel_rows + k > after) {
          auto ts = Clock::now();
          auto sk = RunTuple(state->pixel_skip, {feats->feats[0], feats->feats[1]}, 2, "pixel decoder (skip)");
          feats->feats[0] = sk[0];
          feats->feats[1] = sk[1];
          feats->skip_convolved = true;
          skip_ms += MsSince(ts);
        }
        auto t2 = Clock::now();
        torch::Tensor visual = out[5];
        if (k != b) visual = visual.index_select(0, torch::tensor(found, torch::kLong).to(visual.device()));
        torch::Tensor pixel =
            feats->skip_convolved
                ? RunTuple(state->pixel_split, {feats->feats[0], feats->feats[1], visual}, 1, "pixel decoder (split)")[0]
                : RunTuple(state->pixel, {feats->feats[0], feats->feats[1], visual}, 1, "pixel decoder")[0];
        pixel_ms += MsSince(t2);
        pixel_rows += k;
        if (feats->skip_convolved) {
          split_rows += k;
        } else {
          feats->pixel_rows += k;
        }
        auto t3 = Clock::now();
        for (size_t j = 0; j < found.size(); j++) {
          const int64_t r = found[j];
          AddMasks(results[group[start + r]], out[3][r], out[4][r], pixel[static_cast<int64_t>(j)], mask_threshold,
                   feats->height, feats->width);
        }
        post_ms += MsSince(t3);
      }
    };
    std::vector<size_t> text_only, with_boxes;
    for (size_t i = 0; i < queries.size(); i++) (queries[i].labels.empty() ? text_only : with_boxes).push_back(i);
    if (!text_only.empty()) run_group(text_only, false);
    if (!with_boxes.empty()) run_group(with_boxes, true);
    const int64_t h = feats->height, w = feats->width;
    return [results = std::move(results), head_ms, post_ms, pixel_ms, skip_ms, pixel_rows, split_rows, passes, h,
            w](Napi::Env env, Napi::Object) -> Napi::Value {
      Napi::Object res = Napi::Object::New(env);
      Napi::Array arr = Napi::Array::New(env, results.size());
      for (size_t i = 0; i < results.size(); i++) arr.Set(static_cast<uint32_t>(i), QueryToJs(env, results[i], h, w));
      res.Set("queries", arr);
      Napi::Object timings = Napi::Object::New(env);
      timings.Set("headMs", head_ms);
      timings.Set("postprocessMs", post_ms);
      timings.Set("headPasses", passes);
      timings.Set("pixelDecoderMs", pixel_ms);
      timings.Set("pixelDecoderRows", static_cast<double>(pixel_rows));
      // of which through pixel_split; pixelSkipMs: pixel_skip's one run on this image, if in this call
      timings.Set("pixelSplitRows", static_cast<double>(split_rows));
      timings.Set("pixelSkipMs", skip_ms);
      res.Set("timings", timings);
      return res;
    };
  };
  return core_->Submit(env, std::move(work), "segment");
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

Napi::Value Model::Dispose(const Napi::CallbackInfo& info) {
  // Jobs already queued hold their own reference; the weights go when the last of them finishes.
  state_.reset();
  engine_.Reset();
  return info.Env().Undefined();
}

Napi::Value Model::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !state_); }

// ---------------------------------------------------------------------------------------------
// Handles

Napi::Function ImageFeatures::Init(Napi::Env env) {
  auto props = CommonProperties();
  props.push_back(InstanceAccessor<&ImageFeatures::Width>("width"));
  props.push_back(InstanceAccessor<&ImageFeatures::Height>("height"));
  props.push_back(InstanceAccessor<&ImageFeatures::PixelSkip>("pixelSkip"));
  return DefineClass(env, kClassName, props);
}

ImageFeatures::ImageFeatures(const Napi::CallbackInfo& info) : StateHandle(info) {
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
