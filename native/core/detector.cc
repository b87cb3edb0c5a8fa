#include "core/detector.h"

#include <algorithm>
#include <chrono>

#include "core/errors.h"
#include "core/torchscript.h"

namespace sam3 {
namespace {

// The neck returns (f0, f1, f2, p2, e0); a head pass takes (f2, p2, e0, text, mask[, boxes, labels])
// and returns (pred_logits, pred_boxes, presence_logits, mask_emb, mask_bias, visual); the pixel
// decoder takes (f0, f1, visual) and returns pixel_emb; pixel_skip takes (f0, f1) and returns
// (s0, s1), and pixel_split takes (s0, s1, visual) and returns pixel_emb (bundle format 6).
constexpr size_t kNeckOutputs = 5;
constexpr size_t kHeadOutputs = 6;

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

void Warmup(ModelState& s) {
  const int64_t r = s.config.resolution;
  const int64_t l = s.config.text_length;
  auto fopts = torch::TensorOptions().device(s.device);
  torch::Tensor px = torch::zeros({1, 3, r, r}, fopts.dtype(s.config.dtype));
  auto v = RunTuple(s.neck, {RunBackbone(s, px)}, kNeckOutputs, "vision neck");
  s.pos = v[3].narrow(0, 0, 1).contiguous();
  if (s.config.mask_size != v[0].size(-1)) {
    throw NativeError(code::kModelLoad, "bundle manifest says mask_size " + std::to_string(s.config.mask_size) +
                                            " but the vision encoder produces " + std::to_string(v[0].size(-1)));
  }
  if (!s.config.warmup) return;
  torch::Tensor ids = torch::zeros({1, l}, fopts.dtype(torch::kLong));
  torch::Tensor am = torch::ones({1, l}, fopts.dtype(torch::kLong));
  auto t = RunTuple(s.text, {ids, am}, 1, "text encoder");
  torch::Tensor mask = am.to(torch::kBool);
  auto h = RunTuple(s.head_text, {v[2], v[3], v[4], t[0], mask}, kHeadOutputs, "text head");
  RunTuple(s.pixel, {v[0], v[1], h[5]}, 1, "pixel decoder");
  auto sk = RunTuple(s.pixel_skip, {v[0], v[1]}, 2, "pixel decoder (skip)");
  RunTuple(s.pixel_split, {sk[0], sk[1], h[5]}, 1, "pixel decoder (split)");
  torch::Tensor boxes = torch::full({1, 1, 4}, 0.5, fopts.dtype(s.config.dtype));
  torch::Tensor labels = torch::ones({1, 1}, fopts.dtype(torch::kLong));
  RunTuple(s.head_boxes, {v[2], v[3], v[4], t[0], mask, boxes, labels}, kHeadOutputs, "box head");
}

// Row i of a batched output as a tensor of its own: a slice would keep the whole batch alive, so
// it is copied when batched, and each handle owns its memory.
torch::Tensor OwnRow(const torch::Tensor& batch, int64_t i, int64_t n) {
  torch::Tensor t = batch.narrow(0, i, 1);
  return n == 1 ? t : t.clone();
}

}  // namespace

torch::Tensor RunBackbone(ModelState& s, const torch::Tensor& px) {
  return RunTuple(s.backbone, {px}, 1, "vision backbone")[0];
}

std::shared_ptr<ModelState> LoadModel(const ModelConfig& cfg, const torch::Device& device) {
  auto state = std::make_shared<ModelState>();
  state->config = cfg;
  state->device = device;
  auto t0 = Clock::now();
  LoadPieces(device, {
                         {state->backbone, cfg.backbone_path, "vision backbone"},
                         {state->neck, cfg.neck_path, "vision neck"},
                         {state->text, cfg.text_path, "text encoder"},
                         {state->head_text, cfg.head_text_path, "text detector head"},
                         {state->head_boxes, cfg.head_boxes_path, "text+box detector head"},
                         {state->pixel, cfg.pixel_path, "pixel decoder"},
                         {state->pixel_skip, cfg.pixel_skip_path, "pixel decoder (skip)"},
                         {state->pixel_split, cfg.pixel_split_path, "pixel decoder (split)"},
                     });
  state->processor = MakeImageProcessor(device, cfg.resolution, cfg.mean, cfg.std, cfg.dtype);
  state->load_ms = MsSince(t0);
  auto t1 = Clock::now();
  try {
    Warmup(*state);
  } catch (...) {
    throw CurrentError(code::kModelLoad, "the bundle failed its warm-up run (wrong or corrupt bundle?)");
  }
  state->warmup_ms = MsSince(t1);
  return state;
}

EncodedImages EncodeImages(const std::shared_ptr<ModelState>& state, const std::vector<torch::Tensor>& pixels, bool keep_backbone) {
  EncodedImages res;
  auto t0 = Clock::now();
  std::vector<torch::Tensor> batch;
  batch.reserve(pixels.size());
  for (const auto& p : pixels) batch.push_back(Preprocess(state->processor, p));
  torch::Tensor px = torch::cat(batch, 0);
  batch.clear();
  res.preprocess_ms = MsSince(t0);
  auto t1 = Clock::now();
  torch::Tensor hidden = RunBackbone(*state, px);
  auto out = RunTuple(state->neck, {hidden}, kNeckOutputs, "vision neck");
  res.encoder_ms = MsSince(t1);
  const int64_t n = static_cast<int64_t>(pixels.size());
  for (int64_t i = 0; i < n; i++) {
    auto f = std::make_shared<FeaturesState>();
    for (int lvl = 0; lvl < 3; lvl++) {
      f->feats.push_back(OwnRow(out[lvl], i, n));
      f->bytes += TensorBytes(f->feats.back());
    }
    f->detr_first = OwnRow(out[4], i, n);
    f->bytes += TensorBytes(f->detr_first);
    if (keep_backbone) {
      f->backbone = OwnRow(hidden, i, n);
      f->bytes += TensorBytes(f->backbone);
    }
    f->height = pixels[i].size(0);
    f->width = pixels[i].size(1);
    f->owner = state.get();
    res.features.push_back(std::move(f));
  }
  return res;
}

EncodedTexts EncodeTexts(const std::shared_ptr<ModelState>& state, const torch::Tensor& ids, const torch::Tensor& mask) {
  EncodedTexts res;
  auto t0 = Clock::now();
  torch::Tensor ids_d = ids.to(state->device);
  torch::Tensor mask_d = mask.to(state->device);
  auto out = RunTuple(state->text, {ids_d, mask_d}, 1, "text encoder");
  const int64_t n = ids.size(0);
  for (int64_t i = 0; i < n; i++) {
    auto t = std::make_shared<TextState>();
    t->features = OwnRow(out[0], i, n);
    t->mask = mask_d.narrow(0, i, 1).to(torch::kBool);
    t->bytes = TensorBytes(t->features) + TensorBytes(t->mask);
    t->owner = state.get();
    res.embeddings.push_back(std::move(t));
  }
  res.text_encoder_ms = MsSince(t0);
  return res;
}

// ---------------------------------------------------------------------------------------------
// Segment

namespace {

// The inputs of one head pass over `rows` (indices into queries): the image's features repeated
// per row (batch rows pair 1:1), the texts, and for the box head the box exemplars.
std::vector<torch::jit::IValue> HeadInputs(const ModelState& s, const FeaturesState& feats, const std::vector<QuerySpec>& queries,
                                           const std::vector<size_t>& rows, bool with_boxes) {
  const int64_t b = static_cast<int64_t>(rows.size());
  std::vector<torch::jit::IValue> in;
  in.push_back(feats.feats[2].expand({b, -1, -1, -1}).contiguous());
  in.push_back(s.pos.expand({b, -1, -1, -1}).contiguous());
  in.push_back(feats.detr_first.expand({b, -1, -1}).contiguous());
  std::vector<torch::Tensor> tf, tm;
  for (size_t q : rows) {
    tf.push_back(queries[q].text->features);
    tm.push_back(queries[q].text->mask);
  }
  in.push_back(torch::cat(tf, 0));
  in.push_back(torch::cat(tm, 0));
  if (!with_boxes) return in;
  size_t kmax = 0;
  for (size_t q : rows) kmax = std::max(kmax, queries[q].labels.size());
  // Rows with fewer boxes are padded as Sam3Processor pads them: box (-10, -10, 0, 0) in
  // cxcywh with label -10, which Sam3 masks out.
  std::vector<float> boxes(b * kmax * 4, 0.0f);
  for (size_t i = 0; i < boxes.size(); i += 4) boxes[i] = boxes[i + 1] = -10.0f;
  std::vector<int64_t> labels(b * kmax, -10);
  for (size_t row = 0; row < rows.size(); row++) {
    const QuerySpec& q = queries[rows[row]];
    for (size_t j = 0; j < q.labels.size(); j++) {
      const double x = q.boxes[j * 4], y = q.boxes[j * 4 + 1], w = q.boxes[j * 4 + 2], h = q.boxes[j * 4 + 3];
      float* dst = &boxes[(row * kmax + j) * 4];
      // [x, y, w, h] -> [cx, cy, w, h], computed in double like the reference processor.
      dst[0] = static_cast<float>(x + w / 2);
      dst[1] = static_cast<float>(y + h / 2);
      dst[2] = static_cast<float>(w);
      dst[3] = static_cast<float>(h);
      labels[row * kmax + j] = q.labels[j];
    }
  }
  // clone(): from_blob does not own the vectors, and .to() is a no-op on the CPU, so the
  // tensors would otherwise point at vectors that die at the end of this function.
  in.push_back(torch::from_blob(boxes.data(), {b, static_cast<int64_t>(kmax), 4}, torch::kFloat32).clone().to(s.device, s.config.dtype));
  in.push_back(torch::from_blob(labels.data(), {b, static_cast<int64_t>(kmax)}, torch::kLong).clone().to(s.device));
  return in;
}

// The pixel decoder for k rows' `visual` (the image's skip features broadcast over them). Each of
// its stages is conv(up(prev) + skip) = conv(up(prev)) + conv(skip): once these features have
// decoded pixel_skip_after rows, conv(skip) is computed once (pixel_skip) and kept in place of the
// skip features, and from then on every row runs pixel_split (~35% less a row on a CPU). A
// one-prompt image never pays for pixel_skip.
torch::Tensor DecodePixels(ModelState& s, FeaturesState& feats, const torch::Tensor& visual, SegmentTimings& t) {
  const int64_t k = visual.size(0);
  const int64_t after = s.config.pixel_skip_after;
  if (!feats.skip_convolved && after >= 0 && feats.pixel_rows + k > after) {
    auto ts = Clock::now();
    auto sk = RunTuple(s.pixel_skip, {feats.feats[0], feats.feats[1]}, 2, "pixel decoder (skip)");
    feats.feats[0] = sk[0];
    feats.feats[1] = sk[1];
    feats.skip_convolved = true;
    t.skip_ms += MsSince(ts);
  }
  auto t0 = Clock::now();
  torch::Tensor pixel = feats.skip_convolved
                            ? RunTuple(s.pixel_split, {feats.feats[0], feats.feats[1], visual}, 1, "pixel decoder (split)")[0]
                            : RunTuple(s.pixel, {feats.feats[0], feats.feats[1], visual}, 1, "pixel decoder")[0];
  t.pixel_ms += MsSince(t0);
  t.pixel_rows += k;
  if (feats.skip_convolved) {
    t.split_rows += k;
  } else {
    feats.pixel_rows += k;
  }
  return pixel;
}

// One head pass over `rows`, then the queries above the threshold and their masks.
void RunHeadPass(ModelState& s, FeaturesState& feats, const std::vector<QuerySpec>& queries, const std::vector<size_t>& rows,
                 bool with_boxes, const SegmentOptions& opts, SegmentResult& res) {
  SegmentTimings& t = res.timings;
  auto in = HeadInputs(s, feats, queries, rows, with_boxes);
  auto t0 = Clock::now();
  auto out = RunTuple(with_boxes ? s.head_boxes : s.head_text, std::move(in), kHeadOutputs, with_boxes ? "box head" : "text head");
  t.head_ms += MsSince(t0);
  t.passes++;
  auto t1 = Clock::now();
  const int64_t b = static_cast<int64_t>(rows.size());
  std::vector<int64_t> found;  // rows of this pass with a query above the threshold
  for (int64_t r = 0; r < b; r++) {
    QueryResult& q = res.queries[rows[r]];
    q = SelectQueries(out[0][r], out[1][r], out[2][r], opts.threshold);
    if (q.kept.defined()) found.push_back(r);
  }
  t.postprocess_ms += MsSince(t1);
  if (found.empty()) return;
  torch::Tensor visual = out[5];
  if (static_cast<int64_t>(found.size()) != b) visual = visual.index_select(0, torch::tensor(found, torch::kLong).to(visual.device()));
  torch::Tensor pixel = DecodePixels(s, feats, visual, t);
  auto t3 = Clock::now();
  for (size_t j = 0; j < found.size(); j++) {
    const int64_t r = found[j];
    AddMasks(res.queries[rows[r]], out[3][r], out[4][r], pixel[static_cast<int64_t>(j)], opts.mask_threshold, feats.height,
             feats.width);
  }
  t.postprocess_ms += MsSince(t3);
}

}  // namespace

ConceptDetections DetectConcept(ModelState& s, FeaturesState& feats, const std::shared_ptr<TextState>& text, double min_score) {
  std::vector<QuerySpec> queries(1);
  queries[0].text = text;
  auto out = RunTuple(s.head_text, HeadInputs(s, feats, queries, {0}, false), kHeadOutputs, "text head");
  ConceptDetections d;
  // In the model's dtype, as run_detection computes them: in bfloat16 the probabilities round to
  // 1/512 near 0.25 and the threshold is compared in bfloat16 too (a float32 product here put
  // detections on the other side of score_threshold_detection and reordered ties in NMS).
  d.scores = (torch::sigmoid(out[0][0]) * torch::sigmoid(out[2][0])).contiguous();
  d.boxes = out[1][0];
  d.valid = (d.scores > min_score).nonzero().flatten();
  const int64_t v = d.valid.numel();
  if (v == 0) {
    const int64_t m = s.config.mask_size;
    d.masks = torch::zeros({0, m, m}, torch::TensorOptions().dtype(s.config.dtype).device(s.device));
    return d;
  }
  SegmentTimings t;
  torch::Tensor pixel = DecodePixels(s, feats, out[5], t)[0];
  const int64_t mh = pixel.size(-2), mw = pixel.size(-1);
  d.masks = (torch::mm(out[3][0].index_select(0, d.valid), pixel.reshape({pixel.size(0), mh * mw})).view({v, mh, mw}) +
             out[4][0].index_select(0, d.valid).view({v, 1, 1}));
  return d;
}

SegmentResult Segment(ModelState& s, FeaturesState& feats, const std::vector<QuerySpec>& queries, const SegmentOptions& opts) {
  SegmentResult res;
  res.queries.resize(queries.size());
  std::vector<size_t> text_only, with_boxes;
  for (size_t i = 0; i < queries.size(); i++) (queries[i].labels.empty() ? text_only : with_boxes).push_back(i);
  const size_t max_batch = static_cast<size_t>(opts.max_batch);
  for (bool boxes : {false, true}) {
    const std::vector<size_t>& group = boxes ? with_boxes : text_only;
    for (size_t start = 0; start < group.size(); start += max_batch) {
      const size_t end = std::min(group.size(), start + max_batch);
      RunHeadPass(s, feats, queries, std::vector<size_t>(group.begin() + start, group.begin() + end), boxes, opts, res);
    }
  }
  res.height = feats.height;
  res.width = feats.width;
  return res;
}

}  // namespace sam3
