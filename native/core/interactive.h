// Interactive segmentation on a single image: transformers' Sam3TrackerModel.forward (clicks, a box,
// the previous call's low-res mask logits) over an image's cached features. The image's ViT output
// (kept with its features, FeaturesState::backbone) goes once through the tracker's neck, whose
// output stays with the features, so one ViT pass serves the concept head and every click after it;
// each click then costs the prompt encoder and the mask decoder (tracker_interactive_*.pt).
//
// Torch only; runs on the engine thread (the features and the tracker belong to one engine).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "core/detector.h"
#include "core/tracker.h"

namespace sam3 {

// Low-resolution mask logits [1,1,m,m] (bundle dtype, on the device) handed back for the next click.
struct MaskLogitsState {
  torch::Tensor logits;
  int64_t bytes = 0;
  const TrackerState* owner = nullptr;  // identity and shape checks only
};

// One object's prompt: points (normalised [x, y] pairs, labels 1 / 0) followed by a box's two
// corners (labels 2 and 3), and optionally the low-res logits of an earlier call.
struct InteractivePrompt {
  std::vector<float> xy;
  std::vector<int32_t> labels;
  std::shared_ptr<MaskLogitsState> mask_input;  // null: none
};

struct InteractiveObject {
  std::vector<std::string> masks;  // COCO RLE at the image size, in the model's order
  std::vector<float> iou_scores;   // the mask decoder's predicted IoU, one per mask
  std::vector<float> boxes;        // xywh normalised, 4 per mask (zeros for an empty mask)
  float object_score_logit = 0;
  std::shared_ptr<MaskLogitsState> best;  // the highest-IoU mask's low-res logits
};

struct InteractiveResult {
  std::vector<InteractiveObject> objects;  // one per prompt, in order
  int64_t height = 0, width = 0;
  int64_t feature_bytes = 0;  // the features' bytes after this call (the tracker's features added)
  double neck_ms = 0;         // the tracker neck, when this call ran it (first call on the image)
  double decoder_ms = 0;
  double postprocess_ms = 0;
  int passes = 0;
};

// Sam3TrackerModel.forward(image_embeddings=..., multimask_output) for each prompt. Prompts with the
// same number of points run in one batched pass (rows of different lengths are never padded, so
// each row is what transformers computes for it alone). kInvalidArgument when the features have
// neither the tracker's features nor the ViT output to make them.
InteractiveResult SegmentInteractive(TrackerState& t, FeaturesState& f, const std::vector<InteractivePrompt>& prompts, bool multimask);

}  // namespace sam3
