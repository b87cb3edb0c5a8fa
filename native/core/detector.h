// The SAM 3 image detector over a TorchScript model bundle (transformers' Sam3Model, traced in
// pieces): the ViT and the detector's FPN neck (get_vision_features), the text encoder
// (get_text_features), two DETR heads (text, text+boxes) and the mask decoder's pixel decoder.
// Torch only: the binding (binding/model_wrap.cc) copies JS arguments into these structs on the JS
// thread and calls these functions on the engine thread.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include "core/postprocess.h"
#include "core/preprocess.h"

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

// The loaded pieces of one bundle on one device (the ViT is shared with a video tracker on it).
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
  ImageProcessor processor;
  torch::Tensor pos;  // the coarsest FPN level's position encoding (the only one the heads read), batch 1
  double load_ms = 0;
  double warmup_ms = 0;
};

// The FPN features of one image, kept on the device, reusable for many prompts.
struct FeaturesState {
  std::vector<torch::Tensor> feats;  // 3 FPN levels, batch 1, bundle dtype, on the device; once
                                     // skip_convolved, feats[0]/[1] hold pixel_skip's s0/s1 instead
                                     // (the same shapes: only the pixel decoder reads these levels)
  std::atomic<bool> skip_convolved{false};  // written on the engine thread, read on the JS thread
  int64_t pixel_rows = 0;            // rows decoded by the whole pixel decoder on these features
  torch::Tensor detr_first;          // [1,h*w,D] the first DETR encoder layer's self-attention block
                                     // (prompt-independent: once per image, not once per prompt)
  torch::Tensor backbone;            // the ViT output [1,g*g,V], kept only when asked (video frames,
                                     // images for interactive segmentation)
  // The tracker's features of the image for interactive segmentation (core/interactive.h): its neck's
  // s0, s1 and 1x level, made from `backbone` by the first such call.
  torch::Tensor tracker_s0, tracker_s1, tracker_pix;
  int64_t width = 0;                 // original image size (after EXIF orientation)
  int64_t height = 0;
  std::atomic<int64_t> bytes{0};     // grows when the tracker's features are added (read on the JS thread)
  const ModelState* owner = nullptr;  // identity check only: features belong to one model
};

// The projected text features of one prompt (cached by the JS layer).
struct TextState {
  torch::Tensor features;  // [1, L, D] bundle dtype, on the device
  torch::Tensor mask;      // [1, L] bool, on the device
  int64_t bytes = 0;
  const ModelState* owner = nullptr;
};

// Loads every piece onto `device` and runs the warm-up pass (which also computes the position
// encoding and checks the manifest's mask size). Engine thread.
std::shared_ptr<ModelState> LoadModel(const ModelConfig& cfg, const torch::Device& device);

// pixel_values [B,3,R,R] -> the ViT output [B,g*g,V]. Engine thread.
torch::Tensor RunBackbone(ModelState& s, const torch::Tensor& px);

struct EncodedImages {
  std::vector<std::shared_ptr<FeaturesState>> features;
  double preprocess_ms = 0;
  double encoder_ms = 0;
};

// CPU HWC uint8 images -> their features, in one ViT + neck pass (get_vision_features).
EncodedImages EncodeImages(const std::shared_ptr<ModelState>& s, const std::vector<torch::Tensor>& pixels, bool keep_backbone);

struct EncodedTexts {
  std::vector<std::shared_ptr<TextState>> embeddings;
  double text_encoder_ms = 0;
};

// Token ids and attention mask, [n, L] int64 on the CPU -> n text embeddings (get_text_features).
EncodedTexts EncodeTexts(const std::shared_ptr<ModelState>& s, const torch::Tensor& ids, const torch::Tensor& mask);

// One prompt: a text, and optionally box exemplars (xywh normalised, 4 per box) with 0/1 labels.
struct QuerySpec {
  std::shared_ptr<TextState> text;
  std::vector<double> boxes;
  std::vector<int64_t> labels;
};

struct SegmentOptions {
  double threshold = 0.5;
  double mask_threshold = 0.5;
  int64_t max_batch = 16;  // prompts per head pass
};

struct SegmentTimings {
  double head_ms = 0;
  double postprocess_ms = 0;
  double pixel_ms = 0;
  double skip_ms = 0;  // pixel_skip's one run on this image, if in this call
  int passes = 0;
  int64_t pixel_rows = 0;
  int64_t split_rows = 0;  // of pixel_rows, those through pixel_split
};

struct SegmentResult {
  std::vector<QueryResult> queries;  // one per QuerySpec, in order
  SegmentTimings timings;
  int64_t height = 0, width = 0;
};

// One text concept on an image, as Sam3VideoModel.run_detection reads the detector: every query's
// score (sigmoid(logit) * sigmoid(presence) [Q], in the model's dtype as transformers computes it) and
// box (xyxy normalised, [Q,4]), and the mask logits [V,m,m] of the V queries scoring above min_score
// (`valid`, their indices, ascending; the comparison in the model's dtype too).
struct ConceptDetections {
  torch::Tensor scores, boxes, valid, masks;
};
ConceptDetections DetectConcept(ModelState& s, FeaturesState& feats, const std::shared_ptr<TextState>& text, double min_score);

// N prompts on one image's features: batched head passes (text-only prompts, then prompts with
// boxes), query selection, the pixel decoder for the prompts that found something, and masks.
SegmentResult Segment(ModelState& s, FeaturesState& feats, const std::vector<QuerySpec>& queries, const SegmentOptions& opts);

}  // namespace sam3
