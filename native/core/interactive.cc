#include "core/interactive.h"

#include <chrono>
#include <map>

#include "core/errors.h"
#include "core/postprocess.h"
#include "core/torchscript.h"

namespace sam3 {
namespace {

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Sam3TrackerModel.get_image_embeddings: the tracker neck over the ViT output. Kept with the
// features (the first interactive call on an image pays for it); the ViT output stays too, so a
// video prompt or concept on the same features still finds it.
//
// No no-memory embedding: transformers 5.17's Sam3TrackerModel adds it to fpn_hidden_states[-1],
// which for SAM 3's neck (4 levels: 4x, 2x, 1x, 0.5x) is the 0.5x level, and the zip with its three
// backbone_feature_sizes then drops that level, so its mask decoder reads the 1x level as the neck
// made it. We follow transformers (the parity reference). The video tracker (and SAM 2's image
// predictor) add it to the 1x level; memory_attention.no_memory does that, should this change.
double PrepareTrackerFeatures(TrackerState& t, FeaturesState& f) {
  if (f.tracker_pix.defined()) return 0;
  if (!f.backbone.defined()) {
    throw NativeError(code::kInvalidArgument,
                      "interactive segmentation needs the image's ViT output, and these features were encoded without it: encode the image "
                      "with keepBackbone (the default for a bundle with the interactive decoder)");
  }
  auto t0 = Clock::now();
  auto out = RunTuple(t.neck, {f.backbone}, 4, "tracker neck");
  f.tracker_s0 = out[0];
  f.tracker_s1 = out[1];
  f.tracker_pix = out[2];
  f.bytes += TensorBytes(f.tracker_s0) + TensorBytes(f.tracker_s1) + TensorBytes(f.tracker_pix);
  return MsSince(t0);
}

torch::Tensor Rows(const torch::Tensor& t, int64_t b) { return b == 1 ? t : t.expand({b, -1, -1, -1}).contiguous(); }

}  // namespace

InteractiveResult SegmentInteractive(TrackerState& t, FeaturesState& f, const std::vector<InteractivePrompt>& prompts, bool multimask) {
  const TrackerConfig& c = t.config;
  InteractiveResult res;
  res.height = f.height;
  res.width = f.width;
  res.neck_ms = PrepareTrackerFeatures(t, f);
  res.objects.resize(prompts.size());
  const int64_t m = c.low_res;
  auto opt = torch::TensorOptions().device(t.device);

  // Rows grouped by their number of points: one pass a group, no padding tokens between rows.
  std::map<size_t, std::vector<size_t>> groups;
  for (size_t i = 0; i < prompts.size(); i++) {
    if (prompts[i].labels.empty() || prompts[i].xy.size() != 2 * prompts[i].labels.size()) {
      throw NativeError(code::kInvalidArgument, "interactive prompt " + std::to_string(i) + " needs at least one point or a box");
    }
    groups[prompts[i].labels.size()].push_back(i);
  }
  torch::jit::Module& decoder = multimask ? t.interactive_multi : t.interactive_single;
  for (const auto& [n, rows] : groups) {
    const int64_t b = static_cast<int64_t>(rows.size());
    std::vector<float> xy;
    std::vector<int32_t> labels;
    std::vector<torch::Tensor> masks;
    std::vector<uint8_t> has_mask;
    for (size_t i : rows) {
      xy.insert(xy.end(), prompts[i].xy.begin(), prompts[i].xy.end());
      labels.insert(labels.end(), prompts[i].labels.begin(), prompts[i].labels.end());
      const auto& mi = prompts[i].mask_input;
      masks.push_back(mi ? mi->logits.to(t.device).to(c.dtype) : torch::zeros({1, 1, m, m}, opt.dtype(c.dtype)));
      has_mask.push_back(mi ? 1 : 0);
    }
    const int64_t ni = static_cast<int64_t>(n);
    // float32(normalised) * resolution in float32, as the reference processor scales them.
    torch::Tensor coords = (torch::tensor(xy).view({b, 1, ni, 2}) * static_cast<float>(c.resolution)).to(t.device).to(c.dtype);
    torch::Tensor lab = torch::tensor(labels, torch::TensorOptions().dtype(torch::kInt32)).view({b, 1, ni}).to(t.device);
    torch::Tensor flags = torch::tensor(std::vector<int64_t>(has_mask.begin(), has_mask.end())).to(torch::kBool).to(t.device);
    auto t0 = Clock::now();
    auto out = RunTuple(decoder, {Rows(f.tracker_s0, b), Rows(f.tracker_s1, b), Rows(f.tracker_pix, b), coords, lab, torch::cat(masks, 0), flags}, 3,
                        "tracker interactive decoder");
    res.decoder_ms += MsSince(t0);
    res.passes++;
    auto t1 = Clock::now();
    torch::Tensor iou = out[1].to(torch::kFloat32).to(torch::kCPU);    // [B,1,K]
    torch::Tensor score = out[2].to(torch::kFloat32).to(torch::kCPU);  // [B,1,1]
    const int64_t k = iou.size(2);
    // Read the scores through accessors: an indexing op and a scalar copy per element otherwise.
    const auto iou_at = iou.accessor<float, 3>();
    const auto score_at = score.accessor<float, 3>();
    for (int64_t r = 0; r < b; r++) {
      InteractiveObject& obj = res.objects[rows[static_cast<size_t>(r)]];
      int64_t best = 0;
      for (int64_t j = 0; j < k; j++) {
        const float s = iou_at[r][0][j];
        obj.iou_scores.push_back(s);
        if (s > obj.iou_scores[static_cast<size_t>(best)]) best = j;
        TrackedMask mask = PostProcessTrackedMask(out[0][r][0].narrow(0, j, 1).unsqueeze(0), f.height, f.width);
        obj.masks.push_back(std::move(mask.rle));
        obj.boxes.insert(obj.boxes.end(), mask.box.begin(), mask.box.end());
      }
      obj.object_score_logit = score_at[r][0][0];
      auto logits = std::make_shared<MaskLogitsState>();
      logits->logits = out[0][r][0].narrow(0, best, 1).unsqueeze(0).clone();  // [1,1,m,m]
      logits->bytes = TensorBytes(logits->logits);
      logits->owner = &t;
      obj.best = std::move(logits);
    }
    res.postprocess_ms += MsSince(t1);
  }
  res.feature_bytes = f.bytes;
  return res;
}

}  // namespace sam3
