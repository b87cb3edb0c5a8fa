// SAM 3 concept tracking in video: a port of transformers' Sam3VideoModel per-frame loop
// (_det_track_one_frame and what it calls) over the detector (core/detector.h) and the tracking
// loop (core/tracker.h), with Sam3VideoProcessor.postprocess_outputs and the hotstart buffer of
// propagate_in_video_iterator. Every frame runs the ViT once, the detector head once per concept,
// and the tracker for every tracked object; detections are associated with tracked masklets by mask
// IoU within each concept, unmatched confident detections become new objects, and young tracks
// that stay unmatched or duplicate an older one are removed (hotstart). Function names follow
// transformers' step names. Torch only; engine thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "core/detector.h"
#include "core/tracker.h"

namespace sam3 {

// Sam3VideoConfig's concept-tracking settings (the manifest's video.concept).
struct ConceptConfig {
  double score_threshold_detection = 0.5;
  double det_nms_thresh = 0.1;
  double assoc_iou_thresh = 0.1;
  double trk_assoc_iou_thresh = 0.5;
  double new_det_thresh = 0.7;
  bool recondition_on_trk_masks = true;
  int64_t hotstart_delay = 15;
  int64_t hotstart_unmatch_thresh = 8;
  int64_t hotstart_dup_thresh = 8;
  bool suppress_unmatched_only_within_hotstart = true;
  int64_t init_trk_keep_alive = 30;
  int64_t max_trk_keep_alive = 30;
  int64_t min_trk_keep_alive = -1;
  double suppress_overlapping_based_on_recent_occlusion_threshold = 0.7;
  bool decrease_trk_keep_alive_for_empty_masklets = false;
  int64_t fill_hole_area = 16;
  int64_t max_num_objects = 10000;
  int64_t recondition_every_nth_frame = 16;
  double high_conf_thresh = 0.8;
  double high_iou_thresh = 0.8;
};

// One frame's output before post-processing (Sam3VideoSegmentationOutput).
struct ConceptFrame {
  int64_t frame = 0;
  std::vector<std::pair<int64_t, torch::Tensor>> masks;  // obj_id_to_mask: id -> low-res logits [m,m]
  std::map<int64_t, float> scores;                       // obj_id_to_score
  std::map<int64_t, float> tracker_scores;               // this frame's obj_id_to_tracker_score
  std::set<int64_t> suppressed;
  std::set<int64_t> removed;  // ids hotstart removed on this frame
};

// The concept-tracking state of one video (Sam3VideoInferenceSession's fields beyond the tracker's).
struct ConceptState {
  ConceptConfig config;
  std::vector<std::shared_ptr<TextState>> prompts;  // prompt id = index (null: removed)
  std::vector<double> prompt_thresholds;            // per prompt: score_threshold_detection
  std::map<int64_t, int64_t> obj_prompt;            // obj_id_to_prompt_id
  std::map<int64_t, float> obj_score;               // obj_id_to_score (the detection score at creation)
  std::map<int64_t, std::map<int64_t, float>> tracker_score;  // frame -> obj -> score
  std::map<int64_t, int64_t> last_occluded;         // obj_id_to_last_occluded
  int64_t max_obj_id = -1;
  std::map<int64_t, int64_t> first_frame;           // obj_first_frame_idx
  // unmatched_frame_inds and overlap_pair_to_frame_inds: transformers keeps the frame lists and
  // reads only their lengths, so a count per id (pair) does. An object's entries go when it is
  // removed (ForgetObject), so the state walked every frame is that of live objects only.
  std::map<int64_t, int64_t> unmatched_frames;
  std::map<int64_t, int64_t> keep_alive;
  std::map<std::pair<int64_t, int64_t>, int64_t> overlap_pairs;
  std::map<int64_t, std::set<int64_t>> suppressed;  // per frame
  std::set<int64_t> hotstart_removed;               // removed ids still in a buffered frame: hidden
  std::vector<ConceptFrame> buffer;               // a propagation's frames held back (hotstart_delay)
};

// A frame after Sam3VideoProcessor.postprocess_outputs: objects in id order.
struct ConceptResult {
  int64_t frame = 0;
  std::vector<int64_t> ids, prompts;
  std::vector<std::string> masks;  // RLE at the video size
  std::vector<float> boxes;        // xywh normalised, of the mask before the non-overlap rule
  std::vector<float> scores, tracker_scores;
};

// _det_track_one_frame + the state update of forward(): one frame with every concept. The frame's
// ViT output and detector features come from `feats` (encoded with keep_backbone).
ConceptFrame DetTrackOneFrame(VideoState& v, ConceptState& cs, ModelState& model, FeaturesState& feats, int64_t frame, bool reverse);

// Sam3VideoProcessor.postprocess_outputs.
ConceptResult PostprocessConceptFrame(const VideoState& v, const ConceptState& cs, const ConceptFrame& out);

// Drops an object from the concept state and the tracker (inference_session.remove_object);
// false when the tracker has no such object.
bool RemoveConceptObject(VideoState& v, ConceptState& cs, int64_t obj_id);

// Every object id the concept state holds an entry for (live objects, and removed ones still in a
// buffered frame): what a long video's bookkeeping grows with.
std::set<int64_t> ConceptStateIds(const ConceptState& cs);

// propagate_in_video_iterator's hotstart buffer: `out` joins it, and the frames due (hotstart_delay
// frames late; all of them on the last frame) come back, post-processed with every object hotstart
// removed meanwhile hidden.
std::vector<ConceptResult> BufferHotstart(const VideoState& v, ConceptState& cs, ConceptFrame out, bool last);

}  // namespace sam3
