// Tracker's concept-tracking methods (core/concept.h): add a text concept to a video, remove one,
// and track one frame with every concept, through the hotstart buffer of a propagation.
#include <string>
#include <utility>
#include <vector>

#include "binding/args.h"
#include "binding/js_errors.h"
#include "binding/marshal.h"
#include "binding/model_wrap.h"
#include "binding/tracker_wrap.h"
#include "core/concept.h"

namespace sam3 {
namespace {

ConceptConfig ReadConceptConfig(const Napi::Value& v) {
  OptionReader r = OptionsArg(v, "conceptAdd(video, text, config): config must be an object", "concept option");
  ConceptConfig c;
  c.score_threshold_detection = r.Number("score_threshold_detection");
  c.det_nms_thresh = r.Number("det_nms_thresh");
  c.assoc_iou_thresh = r.Number("assoc_iou_thresh");
  c.trk_assoc_iou_thresh = r.Number("trk_assoc_iou_thresh");
  c.new_det_thresh = r.Number("new_det_thresh");
  c.recondition_on_trk_masks = r.Bool("recondition_on_trk_masks");
  c.hotstart_delay = r.Int("hotstart_delay", 0);
  c.hotstart_unmatch_thresh = r.Int("hotstart_unmatch_thresh", 0);
  c.hotstart_dup_thresh = r.Int("hotstart_dup_thresh", 0);
  c.suppress_unmatched_only_within_hotstart = r.Bool("suppress_unmatched_only_within_hotstart");
  c.init_trk_keep_alive = r.Int("init_trk_keep_alive", -kMaxInt);
  c.max_trk_keep_alive = r.Int("max_trk_keep_alive", -kMaxInt);
  c.min_trk_keep_alive = r.Int("min_trk_keep_alive", -kMaxInt);
  c.suppress_overlapping_based_on_recent_occlusion_threshold = r.Number("suppress_overlapping_based_on_recent_occlusion_threshold");
  c.decrease_trk_keep_alive_for_empty_masklets = r.Bool("decrease_trk_keep_alive_for_empty_masklets");
  c.fill_hole_area = r.Int("fill_hole_area", 0);
  c.max_num_objects = r.Int("max_num_objects", 1);
  c.recondition_every_nth_frame = r.Int("recondition_every_nth_frame", -kMaxInt);
  c.high_conf_thresh = r.Number("high_conf_thresh");
  c.high_iou_thresh = r.Number("high_iou_thresh");
  return c;
}

Napi::Object ConceptResultToJs(Napi::Env env, const ConceptResult& r, int64_t height, int64_t width) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("frame", static_cast<double>(r.frame));
  Napi::Array ids = Napi::Array::New(env, r.ids.size()), prompts = Napi::Array::New(env, r.ids.size());
  for (size_t i = 0; i < r.ids.size(); i++) {
    ids.Set(static_cast<uint32_t>(i), static_cast<double>(r.ids[i]));
    prompts.Set(static_cast<uint32_t>(i), static_cast<double>(r.prompts[i]));
  }
  o.Set("objIds", ids);
  o.Set("concepts", prompts);
  o.Set("masks", RleStrings(env, r.masks));
  o.Set("boxes", ToFloat32Array(env, r.boxes));
  o.Set("scores", ToFloat32Array(env, r.scores));
  o.Set("trackerScores", ToFloat32Array(env, r.tracker_scores));
  o.Set("height", static_cast<double>(height));
  o.Set("width", static_cast<double>(width));
  return o;
}

struct TrackOutput {
  std::vector<ConceptResult> frames;
  std::vector<int64_t> tracked;
  int64_t state_ids = 0;
  int64_t memory_bytes = 0;
  int64_t height = 0, width = 0;
};

}  // namespace

Napi::Value Tracker::ConceptAdd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "conceptAdd");
  if (info.Length() < 3) ThrowInvalid(env, "conceptAdd(video, text: TextEmbedding, config)");
  auto video = VideoHandle::Get(info[0], "conceptAdd(video, ...)");
  CheckOwner(env, video->tracker == state, "conceptAdd", "this video session belongs to another tracker");
  auto text = TextEmbedding::Get(info[1], "conceptAdd(video, text)");
  CheckOwner(env, text->owner == state->model.get(), "conceptAdd", "the text embedding comes from another model");
  ConceptConfig config = ReadConceptConfig(info[2]);
  double threshold = config.score_threshold_detection;
  if (info.Length() > 3 && info[3].IsNumber()) {
    threshold = info[3].As<Napi::Number>().DoubleValue();
    if (!(threshold >= 0 && threshold <= 1)) ThrowInvalid(env, "conceptAdd: threshold must be within [0, 1]");
  }
  return core_->Queue(
      env, "conceptAdd",
      [video, text, config, threshold] {
        if (!video->concepts) {
          video->concepts = std::make_shared<ConceptState>();
          video->concepts->config = config;
        }
        video->concepts->prompts.push_back(text);
        video->concepts->prompt_thresholds.push_back(threshold);
        return static_cast<int64_t>(video->concepts->prompts.size() - 1);
      },
      [](Napi::Env env, int64_t id) -> Napi::Value { return Napi::Number::New(env, static_cast<double>(id)); });
}

Napi::Value Tracker::ConceptRemove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto state = Live(env, "conceptRemove");
  if (info.Length() < 2 || !info[1].IsNumber()) ThrowInvalid(env, "conceptRemove(video, conceptId: number)");
  auto video = VideoHandle::Get(info[0], "conceptRemove(video, ...)");
  CheckOwner(env, video->tracker == state, "conceptRemove", "this video session belongs to another tracker");
  const int64_t id = info[1].As<Napi::Number>().Int64Value();
  return core_->Queue(
      env, "conceptRemove",
      [video, id] {
        std::vector<int64_t> removed;
        ConceptState* cs = video->concepts.get();
        if (!cs || id < 0 || id >= static_cast<int64_t>(cs->prompts.size()) || !cs->prompts[id]) return removed;
        cs->prompts[id] = nullptr;  // ids stay stable; a removed concept detects nothing
        for (const auto& [obj, prompt] : std::map<int64_t, int64_t>(cs->obj_prompt)) {
          if (prompt == id) removed.push_back(obj);
        }
        for (int64_t obj : removed) RemoveConceptObject(*video, *cs, obj);
        return removed;
      },
      [](Napi::Env env, const std::vector<int64_t>& removed) -> Napi::Value {
        Napi::Array a = Napi::Array::New(env, removed.size());
        for (size_t i = 0; i < removed.size(); i++) a.Set(static_cast<uint32_t>(i), static_cast<double>(removed[i]));
        return a;
      });
}

// conceptTrack(video, frame, reverse, features, {mode: 'forward' | 'propagate', first, last})
Napi::Value Tracker::ConceptTrack(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const VideoFrame call = VideoFrameArgs(info, "conceptTrack", info.Length() >= 5 && info[2].IsBoolean(),
                                        "conceptTrack(video, frame, reverse: boolean, features, {mode, first, last})");
  const bool reverse = info[2].As<Napi::Boolean>().Value();
  auto feats = ImageFeatures::Get(info[3], "conceptTrack(..., features)");
  CheckOwner(env, feats->owner == call.tracker->model.get(), "conceptTrack", "the features come from another model");
  if (!feats->backbone.defined()) ThrowInvalid(env, "conceptTrack: the features were encoded without keepBackbone");
  if (feats->width != call.video->width || feats->height != call.video->height) {
    ThrowInvalid(env, "conceptTrack: the features are of an image of another size than the video");
  }
  OptionReader o = OptionsArg(info[4], "conceptTrack(..., options): options must be an object", "conceptTrack option");
  const std::string mode = o.String("mode");
  if (mode != "forward" && mode != "propagate") ThrowInvalid(env, "conceptTrack: mode must be 'forward' or 'propagate'");
  const bool first = o.Bool("first"), last = o.Bool("last");
  auto model = call.tracker->model;
  return core_->Queue(
      env, "conceptTrack",
      [video = call.video, model, feats, frame = call.frame, reverse, propagate = mode == "propagate", first, last] {
        if (!video->concepts) throw NativeError(code::kInvalidArgument, "no concept to track: add a text prompt first");
        ConceptState& cs = *video->concepts;
        if (first) cs.buffer.clear();
        ConceptFrame out = DetTrackOneFrame(*video, cs, *model, *feats, frame, reverse);
        TrackOutput res;
        if (propagate && cs.config.hotstart_delay > 0) res.frames = BufferHotstart(*video, cs, std::move(out), last);
        else res.frames.push_back(PostprocessConceptFrame(*video, cs, out));
        for (const ObjectState& obj : video->objects) res.tracked.push_back(obj.id);
        res.state_ids = static_cast<int64_t>(ConceptStateIds(cs).size());
        res.memory_bytes = MemoryBytes(*video);
        res.height = video->height;
        res.width = video->width;
        return res;
      },
      [](Napi::Env env, const TrackOutput& res) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        Napi::Array frames = Napi::Array::New(env, res.frames.size());
        for (size_t i = 0; i < res.frames.size(); i++) frames.Set(static_cast<uint32_t>(i), ConceptResultToJs(env, res.frames[i], res.height, res.width));
        o.Set("frames", frames);
        Napi::Array tracked = Napi::Array::New(env, res.tracked.size());
        for (size_t i = 0; i < res.tracked.size(); i++) tracked.Set(static_cast<uint32_t>(i), static_cast<double>(res.tracked[i]));
        o.Set("tracked", tracked);
        o.Set("stateIds", static_cast<double>(res.state_ids));
        o.Set("memoryBytes", static_cast<double>(res.memory_bytes));
        return o;
      });
}

}  // namespace sam3
