// Image preprocessing shared by the image predictor and the video tracker: exactly transformers'
// Sam3ImageProcessor (torchvision backend) on an RGB frame.
#pragma once

#include <torch/torch.h>

namespace sam3 {

// A CPU HWC uint8 buffer -> pixel_values [1,3,r,r] in `dtype` on `device`: viewed as NCHW
// (channels-last strides, as the processor sees a PIL image), resized with antialiased bilinear
// (natively in uint8 on CPU; in float then rounded on other devices, as torchvision does), then
// (x - mean) / std in float32 with the 0..255 mean/std ([1,3,1,1] float32 on `device`).
inline torch::Tensor PreprocessRgb(const torch::Tensor& hwc_cpu, const torch::Device& device, int64_t r, const torch::Tensor& mean,
                                   const torch::Tensor& std, torch::ScalarType dtype) {
  namespace F = torch::nn::functional;
  torch::Tensor img = hwc_cpu.unsqueeze(0).to(device, /*non_blocking=*/false).permute({0, 3, 1, 2});
  if (img.size(2) != r || img.size(3) != r) {
    auto opts = F::InterpolateFuncOptions().size(std::vector<int64_t>{r, r}).mode(torch::kBilinear).align_corners(false).antialias(true);
    img = device.is_cpu() ? F::interpolate(img, opts) : F::interpolate(img.to(torch::kFloat32), opts).round_().to(torch::kUInt8);
  }
  return ((img.to(torch::kFloat32) - mean) / std).to(dtype);
}

}  // namespace sam3
