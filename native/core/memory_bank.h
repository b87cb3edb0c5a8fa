// The tracker's memory bank: which of an object's stored frames a new frame attends to (transformers'
// _select_closest_cond_frames, _gather_memory_frame_outputs, _get_object_pointers), and how the bank
// stays bounded on a long video.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

#include <torch/torch.h>

#include "core/tracker.h"

namespace sam3 {

struct CondFrameSelection {
  std::vector<int64_t> selected;  // in the order transformers builds its dict
  std::set<int64_t> unselected;
};

// All conditioning frames, or the closest max_cond_frames (the one before, the one after, then the
// nearest others).
CondFrameSelection SelectClosestCondFrames(const OrderedOuts& cond, int64_t frame, int64_t max_cond_frames);

// The encoded memories a frame attends to, with their temporal offsets (0 for conditioning frames).
struct MemoryFrames {
  std::vector<torch::Tensor> maskmem, maskmem_pos;
  std::vector<int64_t> offsets;
};

MemoryFrames GatherMemoryFrameOutputs(const ObjectState& obj, const CondFrameSelection& cond, int64_t frame, bool reverse,
                                      const TrackerConfig& c);

struct ObjectPointers {
  std::vector<torch::Tensor> pointers;
  std::vector<int64_t> offsets;
  int64_t max_pointers = 0;  // max_object_pointers_to_use
};

// Conditioning frames not after (before, in reverse) this one, then the tracked frames just before it.
ObjectPointers GetObjectPointers(const ObjectState& obj, int64_t frame, bool reverse, int64_t num_frames, const TrackerConfig& c);

// Drops the tracked (non-conditioning) outputs no later frame can read: see memory_bank.cc.
void PruneMemories(VideoState& v, int64_t frame);

}  // namespace sam3
