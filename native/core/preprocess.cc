#include "core/preprocess.h"

#include <vector>

namespace sam3 {

ImageProcessor MakeImageProcessor(const torch::Device& device, int64_t resolution, const std::array<float, 3>& mean,
                                  const std::array<float, 3>& std, torch::ScalarType dtype) {
  auto fopts = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  ImageProcessor p;
  p.device = device;
  p.resolution = resolution;
  p.mean = torch::tensor(std::vector<float>(mean.begin(), mean.end()), fopts).view({1, 3, 1, 1});
  p.std = torch::tensor(std::vector<float>(std.begin(), std.end()), fopts).view({1, 3, 1, 1});
  p.dtype = dtype;
  return p;
}

torch::Tensor Preprocess(const ImageProcessor& p, const torch::Tensor& hwc_cpu) {
  namespace F = torch::nn::functional;
  const int64_t r = p.resolution;
  torch::Tensor img = hwc_cpu.unsqueeze(0).to(p.device, /*non_blocking=*/false).permute({0, 3, 1, 2});
  if (img.size(2) != r || img.size(3) != r) {
    auto opts = F::InterpolateFuncOptions().size(std::vector<int64_t>{r, r}).mode(torch::kBilinear).align_corners(false).antialias(true);
    img = p.device.is_cpu() ? F::interpolate(img, opts) : F::interpolate(img.to(torch::kFloat32), opts).round_().to(torch::kUInt8);
  }
  return ((img.to(torch::kFloat32) - p.mean) / p.std).to(p.dtype);
}

}  // namespace sam3
