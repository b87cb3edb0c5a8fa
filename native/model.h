// SAM 3 image predictor over a TorchScript model bundle.
//
// Model       the traced pieces of a bundle on one engine (device): ViT, detector neck, text encoder,
//             two heads and the pixel decoder (the ViT is shared with a video Tracker on the same engine), plus constants
//             (normalisation, position encodings) computed once at load.
// ImageFeatures  the FPN features of one image, kept on the device, reusable for many prompts.
// TextEmbedding  the projected text features of one prompt (cached by the JS layer).
#pragma once

#include <napi.h>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "addon.h"
#include "engine.h"
#include "errors.h"

namespace sam3 {

struct ModelConfig {
  std::string backbone_path;  // the ViT
  std::string neck_path;      // the detector's FPN neck over the ViT output
  std::string text_path;
  std::string head_text_path;
  std::string head_boxes_path;
  std::string pixel_path;     // the mask decoder's pixel decoder, run only for prompts that found something
  std::string pixel_skip_path;   // the same decoder split: its convolutions of the skip features (per image)
  std::string pixel_split_path;  // and the rest, from those (per prompt)
  std::string bundle_device;  // the device the bundle was traced on
  torch::ScalarType dtype = torch::kFloat32;
  int64_t resolution = 0;
  int64_t mask_size = 0;
  int64_t text_length = 0;
  int64_t hidden_size = 0;
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
  bool warmup = true;
  // Rows an image's features decode with the whole pixel decoder before Segment computes pixel_skip
  // for them (once) and switches to pixel_split; -1: never.
  int64_t pixel_skip_after = 2;
};

struct ModelState {
  ModelConfig config;
  torch::Device device{torch::kCPU};
  torch::jit::Module backbone;
  torch::jit::Module neck;
  torch::jit::Module text;
  torch::jit::Module head_text;
  torch::jit::Module head_boxes;
  torch::jit::Module pixel;
  torch::jit::Module pixel_skip;
  torch::jit::Module pixel_split;
  torch::Tensor pos;  // the coarsest FPN level's position encoding (the only one the heads read), batch 1
  torch::Tensor mean;              // [1,3,1,1] float32
  torch::Tensor std;
  double load_ms = 0;
  double warmup_ms = 0;
};

struct FeaturesState {
  std::vector<torch::Tensor> feats;  // 3 FPN levels, batch 1, bundle dtype, on the device; once
                                     // skip_convolved, feats[0]/[1] hold pixel_skip's s0/s1 instead
                                     // (the same shapes: only the pixel decoder reads these levels)
  std::atomic<bool> skip_convolved{false};  // written on the engine thread, read on the JS thread
  int64_t pixel_rows = 0;            // rows decoded by the whole pixel decoder on these features
  torch::Tensor detr_first;          // [1,h*w,D] the first DETR encoder layer's self-attention block
                                     // (prompt-independent: once per image, not once per prompt)
  torch::Tensor backbone;            // the ViT output [1,g*g,V], kept only when asked (video frames)
  int64_t width = 0;                 // original image size (after EXIF orientation)
  int64_t height = 0;
  int64_t bytes = 0;
  const ModelState* owner = nullptr;  // identity check only: features belong to one model
};

// pixel_values [B,3,R,R] -> the ViT output [B,g*g,V] (engine thread).
torch::Tensor RunBackbone(ModelState& s, const torch::Tensor& px);

struct TextState {
  torch::Tensor features;  // [1, L, D] bundle dtype, on the device
  torch::Tensor mask;      // [1, L] bool, on the device
  int64_t bytes = 0;
  const ModelState* owner = nullptr;
};

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Value Load(const Napi::CallbackInfo& info, std::shared_ptr<EngineCore> core);
  explicit Model(const Napi::CallbackInfo& info);

  // The model's state for a Tracker on the same engine (it runs the model's ViT); throws a JS
  // error when v is not a live Model.
  static std::shared_ptr<ModelState> StateOf(const Napi::Value& v, const char* what);

 private:
  Napi::Value EncodeImages(const Napi::CallbackInfo& info);
  Napi::Value EncodeTexts(const Napi::CallbackInfo& info);
  Napi::Value Segment(const Napi::CallbackInfo& info);
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);

  std::shared_ptr<ModelState> Live(Napi::Env env, const char* op);

  std::shared_ptr<ModelState> state_;
  std::shared_ptr<EngineCore> core_;
  Napi::ObjectReference engine_;  // keeps the JS Engine (and its thread) alive while the model lives
};

// A JS handle owning one native state (image features, a text embedding). dispose() drops the
// handle's reference now; jobs already queued hold their own, so the memory goes when the last of
// them finishes. Self supplies its names and its constructor reference.
template <typename Self, typename State>
class StateHandle : public Napi::ObjectWrap<Self> {
 public:
  explicit StateHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Self>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      ThrowInvalid(info.Env(), std::string(Self::kClassName) + " cannot be constructed directly: " + Self::kMadeBy);
    }
    state_ = *info[0].template As<Napi::External<std::shared_ptr<State>>>().Data();
    bytes_ = state_->bytes;
  }

  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<State> state) {
    auto* p = new std::shared_ptr<State>(std::move(state));
    return Self::Constructor(env).New(
        {Napi::External<std::shared_ptr<State>>::New(env, p, [](Napi::Env, std::shared_ptr<State>* q) { delete q; })});
  }

  static std::shared_ptr<State> Get(const Napi::Value& v, const char* what) {
    Napi::Env env = v.Env();
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(Self::Constructor(env).Value())) {
      ThrowInvalid(env, std::string(what) + " must be " + Self::kHandleName);
    }
    auto* self = Napi::ObjectWrap<Self>::Unwrap(v.As<Napi::Object>());
    if (!self->state_) throw MakeJsError(env, code::kDisposed, std::string(what) + ": " + Self::kDisposedMessage);
    return self->state_;
  }

 protected:
  using Method = Napi::Value (Self::*)(const Napi::CallbackInfo&);

  static std::vector<Napi::ClassPropertyDescriptor<Self>> CommonProperties() {
    return {
        Napi::ObjectWrap<Self>::InstanceMethod("dispose", static_cast<Method>(&StateHandle::Dispose)),
        Napi::ObjectWrap<Self>::InstanceAccessor("disposed", static_cast<Method>(&StateHandle::Disposed), nullptr),
        Napi::ObjectWrap<Self>::InstanceAccessor("bytes", static_cast<Method>(&StateHandle::Bytes), nullptr),
    };
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    state_.reset();
    return info.Env().Undefined();
  }
  Napi::Value Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !state_); }
  Napi::Value Bytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), static_cast<double>(bytes_)); }

  std::shared_ptr<State> state_;
  int64_t bytes_ = 0;
};

class ImageFeatures : public StateHandle<ImageFeatures, FeaturesState> {
 public:
  static constexpr const char* kClassName = "ImageFeatures";
  static constexpr const char* kMadeBy = "use model.encodeImages()";
  static constexpr const char* kHandleName = "an ImageFeatures handle";
  static constexpr const char* kDisposedMessage = "the image features have been disposed";
  static Napi::FunctionReference& Constructor(Napi::Env env) { return AddonData::Get(env)->features_ctor; }

  static Napi::Function Init(Napi::Env env);
  explicit ImageFeatures(const Napi::CallbackInfo& info);

 private:
  Napi::Value Width(const Napi::CallbackInfo& info);
  Napi::Value Height(const Napi::CallbackInfo& info);
  Napi::Value PixelSkip(const Napi::CallbackInfo& info);
  int64_t width_ = 0, height_ = 0;
};

class TextEmbedding : public StateHandle<TextEmbedding, TextState> {
 public:
  static constexpr const char* kClassName = "TextEmbedding";
  static constexpr const char* kMadeBy = "use model.encodeTexts()";
  static constexpr const char* kHandleName = "a TextEmbedding handle";
  static constexpr const char* kDisposedMessage = "the text embedding has been disposed";
  static Napi::FunctionReference& Constructor(Napi::Env env) { return AddonData::Get(env)->text_ctor; }

  static Napi::Function Init(Napi::Env env);
  explicit TextEmbedding(const Napi::CallbackInfo& info) : StateHandle(info) {}
};

}  // namespace sam3
