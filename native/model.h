// SAM 3 image predictor over a TorchScript model bundle.
//
// Model       the four traced pieces of a bundle on one engine (device), plus constants
//             (normalisation, position encodings) computed once at load.
// ImageFeatures  the FPN features of one image, kept on the device, reusable for many prompts.
// TextEmbedding  the projected text features of one prompt (cached by the JS layer).
#pragma once

#include <napi.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "engine.h"

namespace sam3 {

struct ModelConfig {
  std::string vision_path;
  std::string text_path;
  std::string head_text_path;
  std::string head_boxes_path;
  std::string bundle_device;  // the device the bundle was traced on
  torch::ScalarType dtype = torch::kFloat32;
  int64_t resolution = 0;
  int64_t mask_size = 0;
  int64_t text_length = 0;
  int64_t hidden_size = 0;
  std::array<float, 3> mean{};
  std::array<float, 3> std{};
  bool warmup = true;
};

struct ModelState {
  ModelConfig config;
  torch::Device device{torch::kCPU};
  torch::jit::Module vision;
  torch::jit::Module text;
  torch::jit::Module head_text;
  torch::jit::Module head_boxes;
  std::vector<torch::Tensor> pos;  // position encodings of the 3 FPN levels, batch 1
  torch::Tensor mean;              // [1,3,1,1] float32
  torch::Tensor std;
  double load_ms = 0;
  double warmup_ms = 0;
};

struct FeaturesState {
  std::vector<torch::Tensor> feats;  // 3 FPN levels, batch 1, bundle dtype, on the device
  int64_t width = 0;                 // original image size (after EXIF orientation)
  int64_t height = 0;
  int64_t bytes = 0;
  const ModelState* owner = nullptr;  // identity check only: features belong to one model
};

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

class ImageFeatures : public Napi::ObjectWrap<ImageFeatures> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ImageFeatures(const Napi::CallbackInfo& info);
  static std::shared_ptr<FeaturesState> Get(const Napi::Value& v, const char* what);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<FeaturesState> state);

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Width(const Napi::CallbackInfo& info);
  Napi::Value Height(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  std::shared_ptr<FeaturesState> state_;
  int64_t width_ = 0, height_ = 0, bytes_ = 0;
};

class TextEmbedding : public Napi::ObjectWrap<TextEmbedding> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit TextEmbedding(const Napi::CallbackInfo& info);
  static std::shared_ptr<TextState> Get(const Napi::Value& v, const char* what);
  static Napi::Object Wrap(Napi::Env env, std::shared_ptr<TextState> state);

 private:
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value Bytes(const Napi::CallbackInfo& info);
  std::shared_ptr<TextState> state_;
  int64_t bytes_ = 0;
};

}  // namespace sam3
