#include "core/postprocess.h"

#include <algorithm>

#include "core/rle.h"

namespace sam3 {

namespace F = torch::nn::functional;

QueryResult SelectQueries(const torch::Tensor& logits, const torch::Tensor& boxes_xyxy, const torch::Tensor& presence,
                          double threshold) {
  QueryResult out;
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

// A few of the 200 queries, each a [C] x [C, M*M] product: cheaper than the head's einsum over all.
void AddMasks(QueryResult& out, const torch::Tensor& mask_emb, const torch::Tensor& mask_bias, const torch::Tensor& pixel_emb,
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

TrackedMask PostProcessTrackedMask(const torch::Tensor& low_res_logits, int64_t height, int64_t width) {
  TrackedMask out;
  torch::Tensor up = F::interpolate(low_res_logits.to(torch::kFloat32),
                                    F::InterpolateFuncOptions().size(std::vector<int64_t>{height, width}).mode(torch::kBilinear).align_corners(false));
  torch::Tensor bin = (up[0][0] > 0).to(torch::kUInt8).to(torch::kCPU).contiguous();
  out.rle = RleEncodeRowMajor(bin.data_ptr<uint8_t>(), height, width);
  torch::Tensor rows = bin.any(1).nonzero();
  torch::Tensor cols = bin.any(0).nonzero();
  if (rows.numel() != 0) {
    const float y0 = rows.min().item<int64_t>(), y1 = rows.max().item<int64_t>() + 1;
    const float x0 = cols.min().item<int64_t>(), x1 = cols.max().item<int64_t>() + 1;
    out.box = {x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height};
  }
  return out;
}

}  // namespace sam3
