#include "core/mask_ops.h"

#include <algorithm>
#include <map>
#include <numeric>

namespace sam3 {

torch::Tensor MaskIou(const torch::Tensor& a, const torch::Tensor& b) {
  const int64_t n = a.size(0), m = b.size(0);
  const int64_t hw = a.size(1) * a.size(2);
  torch::Tensor af = a.reshape({n, 1, hw});
  torch::Tensor bf = b.reshape({1, m, hw});
  torch::Tensor inter = (af & bf).sum(2).to(torch::kFloat32);
  torch::Tensor uni = (af | bf).sum(2).to(torch::kFloat32);
  return inter / uni.clamp_min(1);
}

std::vector<int64_t> GenericNms(const torch::Tensor& ious, const torch::Tensor& scores, double iou_threshold) {
  torch::Tensor iou = ious.to(torch::kFloat32).to(torch::kCPU).contiguous();
  torch::Tensor s = scores.to(torch::kFloat32).to(torch::kCPU).contiguous();
  const int64_t n = s.size(0);
  torch::Tensor order_t = std::get<1>(torch::sort(s, /*stable=*/true, /*dim=*/0, /*descending=*/true)).contiguous();
  std::vector<int64_t> order(order_t.data_ptr<int64_t>(), order_t.data_ptr<int64_t>() + n);
  const float* m = iou.data_ptr<float>();
  std::vector<char> dropped(n, 0);
  std::vector<int64_t> kept;
  for (int64_t a = 0; a < n; a++) {
    const int64_t i = order[a];
    if (dropped[i]) continue;
    kept.push_back(i);
    for (int64_t b = a + 1; b < n; b++) {
      const int64_t j = order[b];
      if (!dropped[j] && m[i * n + j] > iou_threshold) dropped[j] = 1;
    }
  }
  return kept;
}

torch::Tensor NmsMasks(const torch::Tensor& probs, const torch::Tensor& masks, double prob_threshold, double iou_threshold) {
  torch::Tensor valid = probs > prob_threshold;
  torch::Tensor valid_idx = valid.nonzero().flatten();
  if (valid_idx.numel() == 0) return valid;
  torch::Tensor bin = masks.index_select(0, valid_idx) > 0;
  std::vector<int64_t> kept = GenericNms(MaskIou(bin, bin), probs.index_select(0, valid_idx), iou_threshold);
  torch::Tensor keep = torch::zeros_like(valid);
  torch::Tensor kept_t = torch::tensor(kept, torch::kLong).to(valid_idx.device());
  keep.index_fill_(0, valid_idx.index_select(0, kept_t), true);
  return keep;
}

namespace {

int32_t Find(std::vector<int32_t>& parent, int32_t x) {
  while (parent[x] != x) {
    parent[x] = parent[parent[x]];
    x = parent[x];
  }
  return x;
}

// 8-connected component areas of one H x W mask (row-major bytes) into `areas`.
void Areas2d(const uint8_t* mask, int64_t h, int64_t w, int32_t* areas) {
  const int64_t n = h * w;
  std::vector<int32_t> parent(n);
  std::iota(parent.begin(), parent.end(), 0);
  auto unite = [&](int32_t a, int32_t b) {
    a = Find(parent, a);
    b = Find(parent, b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  };
  for (int64_t y = 0; y < h; y++) {
    for (int64_t x = 0; x < w; x++) {
      const int64_t p = y * w + x;
      if (!mask[p]) continue;
      // Neighbours already visited: left, and the three above.
      if (x > 0 && mask[p - 1]) unite(static_cast<int32_t>(p), static_cast<int32_t>(p - 1));
      if (y > 0) {
        for (int64_t dx = -1; dx <= 1; dx++) {
          const int64_t xx = x + dx;
          if (xx >= 0 && xx < w && mask[p - w + dx]) unite(static_cast<int32_t>(p), static_cast<int32_t>(p - w + dx));
        }
      }
    }
  }
  std::vector<int32_t> size(n, 0);
  for (int64_t p = 0; p < n; p++) {
    if (mask[p]) size[Find(parent, static_cast<int32_t>(p))]++;
  }
  for (int64_t p = 0; p < n; p++) areas[p] = mask[p] ? size[Find(parent, static_cast<int32_t>(p))] : 0;
}

}  // namespace

torch::Tensor ComponentAreas(const torch::Tensor& mask) {
  torch::Tensor m = (mask != 0).to(torch::kUInt8).to(torch::kCPU).contiguous();
  const int64_t b = m.size(0), h = m.size(-2), w = m.size(-1);
  torch::Tensor areas = torch::zeros(m.sizes(), torch::TensorOptions().dtype(torch::kInt32));
  for (int64_t i = 0; i < b; i++) {
    Areas2d(m.data_ptr<uint8_t>() + i * h * w, h, w, areas.data_ptr<int32_t>() + i * h * w);
  }
  return areas.to(mask.device());
}

torch::Tensor FillHolesInMaskScores(const torch::Tensor& mask_in, int64_t max_area) {
  if (max_area <= 0) return mask_in;
  torch::Tensor mask = mask_in;
  // Small background components (holes) become foreground with a small positive score.
  torch::Tensor bg = mask <= 0;
  torch::Tensor small_bg = bg & (ComponentAreas(bg) <= max_area);
  mask = torch::where(small_bg, torch::scalar_tensor(0.1, mask.options()), mask);
  // Small foreground components (sprinkles) become background: under max_area and half the mask's area.
  torch::Tensor fg = mask > 0;
  torch::Tensor thresh = fg.sum({2, 3}, /*keepdim=*/true, torch::kInt32).floor_divide(2).clamp_max(max_area);
  torch::Tensor small_fg = fg & (ComponentAreas(fg) <= thresh);
  return torch::where(small_fg, torch::scalar_tensor(-0.1, mask.options()), mask);
}

torch::Tensor ApplyNonOverlappingConstraints(const torch::Tensor& pred_masks) {
  const int64_t b = pred_masks.size(0);
  if (b == 1) return pred_masks;
  torch::Tensor max_idx = pred_masks.argmax(0, /*keepdim=*/true);
  torch::Tensor idx = torch::arange(b, torch::TensorOptions().dtype(torch::kLong).device(pred_masks.device())).view({b, 1, 1, 1});
  return torch::where(max_idx == idx, pred_masks, pred_masks.clamp_max(-10.0));
}

std::vector<std::pair<int64_t, std::vector<int64_t>>> Groups(const std::vector<int64_t>& group_ids) {
  std::map<int64_t, std::vector<int64_t>> g;
  for (size_t i = 0; i < group_ids.size(); i++) g[group_ids[i]].push_back(static_cast<int64_t>(i));
  return {g.begin(), g.end()};
}

namespace {

torch::Tensor SuppressShrunkMasks(const torch::Tensor& pred, const torch::Tensor& constrained, double shrink_threshold = 0.3) {
  torch::Tensor before = (pred > 0).sum({-1, -2}).clamp_min(1);
  torch::Tensor after = (constrained > 0).sum({-1, -2});
  torch::Tensor keep = (after.to(torch::kFloat32) / before.to(torch::kFloat32)) >= shrink_threshold;
  return torch::where(keep.unsqueeze(-1).unsqueeze(-1).expand_as(pred), pred, pred.clamp_max(-10.0));
}

}  // namespace

torch::Tensor SuppressObjectPwAreaShrinkage(const torch::Tensor& pred_masks, const std::vector<int64_t>& group_ids) {
  torch::Tensor out = pred_masks.clone();
  for (const auto& [id, rows] : Groups(group_ids)) {
    if (rows.size() <= 1) continue;
    torch::Tensor idx = torch::tensor(rows, torch::kLong).to(out.device());
    torch::Tensor group = out.index_select(0, idx);
    out.index_copy_(0, idx, SuppressShrunkMasks(group, ApplyNonOverlappingConstraints(group)));
  }
  return out;
}

torch::Tensor ObjectWiseNonOverlap(const torch::Tensor& masks, const torch::Tensor& scores, const std::vector<int64_t>& group_ids,
                                   double background) {
  torch::Tensor out = masks.clone();
  for (const auto& [id, rows] : Groups(group_ids)) {
    torch::Tensor idx = torch::tensor(rows, torch::kLong).to(out.device());
    torch::Tensor m = out.index_select(0, idx);
    torch::Tensor s = scores.index_select(0, idx).to(m.dtype()).view({-1, 1, 1, 1});
    torch::Tensor single = torch::where(m > 0, s, torch::scalar_tensor(background, m.options()));
    torch::Tensor pixel = ApplyNonOverlappingConstraints(single);
    out.index_copy_(0, idx, torch::where(pixel > 0, m, m.clamp_max(background)));
  }
  return out;
}

}  // namespace sam3
