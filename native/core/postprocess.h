// Post-processing to the final outputs: scores, normalised boxes and COCO RLE masks, the way
// transformers' Sam3Processor.post_process_instance_segmentation (image) and
// Sam3TrackerVideoProcessor.post_process_masks (video) make them. No float mask leaves here.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace sam3 {

// What one prompt found on an image.
struct QueryResult {
  std::vector<float> scores;
  std::vector<float> boxes;  // xywh normalised
  std::vector<std::string> masks;
  torch::Tensor kept;        // indices of the kept queries, by descending score (until the masks are made)
};

// One prompt's outputs of a head pass: score = sigmoid(logit) * sigmoid(presence), threshold, sort
// by score, boxes to xywh. Leaves the kept queries' indices in `kept` (undefined: nothing found, and
// the pixel decoder need not run).
QueryResult SelectQueries(const torch::Tensor& logits, const torch::Tensor& boxes_xyxy, const torch::Tensor& presence,
                          double threshold);

// The kept queries' masks: pred_masks[q] = mask_emb[q] . pixel_emb + mask_bias[q], sigmoid,
// upsampled to the original size, > mask_threshold, RLE-encoded.
void AddMasks(QueryResult& out, const torch::Tensor& mask_emb, const torch::Tensor& mask_bias, const torch::Tensor& pixel_emb,
              double mask_threshold, int64_t height, int64_t width);

// One tracked object's mask on a frame.
struct TrackedMask {
  std::string rle;
  std::array<float, 4> box{};  // xywh normalised; zeros when the mask is empty
};

// Low-res mask logits [1,1,m,m] -> the mask at height x width (bilinear, > 0) and its bounding box.
TrackedMask PostProcessTrackedMask(const torch::Tensor& low_res_logits, int64_t height, int64_t width);

}  // namespace sam3
