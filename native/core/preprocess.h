// Image preprocessing shared by the image predictor and the video tracker: exactly transformers'
// Sam3ImageProcessor (torchvision backend) on an RGB frame.
#pragma once

#include <array>
#include <cstdint>

#include <torch/torch.h>

namespace sam3 {

// What preprocessing needs of a bundle, made once at load.
struct ImageProcessor {
  torch::Device device{torch::kCPU};
  int64_t resolution = 0;
  torch::Tensor mean;  // [1,3,1,1] float32 on `device`, 0..255 scale
  torch::Tensor std;
  torch::ScalarType dtype = torch::kFloat32;
};

ImageProcessor MakeImageProcessor(const torch::Device& device, int64_t resolution, const std::array<float, 3>& mean,
                                  const std::array<float, 3>& std, torch::ScalarType dtype);

// A CPU HWC uint8 buffer -> pixel_values [1,3,r,r] in the bundle dtype on the device: viewed as NCHW
// (channels-last strides, as the processor sees a PIL image), resized with antialiased bilinear
// (natively in uint8 on CPU; in float then rounded on other devices, as torchvision does), then
// (x - mean) / std in float32.
torch::Tensor Preprocess(const ImageProcessor& p, const torch::Tensor& hwc_cpu);

}  // namespace sam3
