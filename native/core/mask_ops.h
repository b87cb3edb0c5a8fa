// Mask operations of SAM 3's concept tracking (transformers' modeling_sam3_video helpers and the
// kernels it looks for): mask IoU, mask NMS, 8-connected component areas, hole filling and sprinkle
// removal, and the pixel-wise non-overlap constraints. Torch only; every function works on the
// tensors' own device except the connected components, which run on the CPU (low-resolution masks).
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace sam3 {

// mask_iou: (N,H,W) bool x (M,H,W) bool -> (N,M) float32 IoU (union clamped to >= 1).
torch::Tensor MaskIou(const torch::Tensor& a, const torch::Tensor& b);

// generic_nms over a pairwise IoU matrix: visit by descending score (ties: lower index first), keep
// one, drop the rest whose IoU with it is > iou_threshold. The kept indices, in visiting order.
std::vector<int64_t> GenericNms(const torch::Tensor& ious, const torch::Tensor& scores, double iou_threshold);

// nms_masks: (num_det,) bool, whether each detection is above prob_threshold and survives NMS on
// the IoU of its binarised mask (> 0).
torch::Tensor NmsMasks(const torch::Tensor& probs, const torch::Tensor& masks, double prob_threshold, double iou_threshold);

// cc_2d's counts: for a (B,1,H,W) mask (nonzero = foreground), each foreground pixel's
// 8-connected component area; 0 on the background. int32, on the mask's device.
torch::Tensor ComponentAreas(const torch::Tensor& mask);

// fill_holes_in_mask_scores (both steps): background components of area <= max_area become 0.1;
// then foreground components of area <= min(max_area, foreground area / 2) become -0.1.
// mask: (B,1,H,W) logits. max_area <= 0: unchanged.
torch::Tensor FillHolesInMaskScores(const torch::Tensor& mask, int64_t max_area);

// _apply_non_overlapping_constraints: where an object is not the highest-scoring one, its logits
// are clamped to <= -10. pred_masks: (B,1,H,W).
torch::Tensor ApplyNonOverlappingConstraints(const torch::Tensor& pred_masks);

// _suppress_object_pw_area_shrinkage within each group of equal ids: an object whose area shrinks
// below 30% under the non-overlap constraints is clamped to <= -10 everywhere.
torch::Tensor SuppressObjectPwAreaShrinkage(const torch::Tensor& pred_masks, const std::vector<int64_t>& group_ids);

// The processor's object-wise non-overlap rule within each group: where masks overlap, the one
// with the highest score keeps the pixel (ties to the lower index), the others get `background`.
// masks: (B,1,H,W) float; scores: (B,) float.
torch::Tensor ObjectWiseNonOverlap(const torch::Tensor& masks, const torch::Tensor& scores, const std::vector<int64_t>& group_ids,
                                   double background);

// The distinct ids of `group_ids`, ascending, each with the positions that hold it.
std::vector<std::pair<int64_t, std::vector<int64_t>>> Groups(const std::vector<int64_t>& group_ids);

}  // namespace sam3
