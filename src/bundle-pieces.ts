/**
 * How a bundle's manifest and files map onto the addon's load options: one place that knows which
 * TorchScript piece plays which part (the detector's pieces for Sam3Model, the tracker's for video).
 */
import type { Bundle } from './bundle.js';
import type { NativeModel, NativeModelOptions, NativeTrackerOptions } from './native.js';

export function detectorOptions(bundle: Bundle, options: { pixelSkipAfter: number; warmup: boolean }): NativeModelOptions {
  const m = bundle.manifest;
  return {
    visionBackbone: bundle.file('vision_backbone'),
    visionNeck: bundle.file('vision_neck'),
    textEncoder: bundle.file('text_encoder'),
    headText: bundle.file('head_text'),
    headTextBoxes: bundle.file('head_text_boxes'),
    pixelDecoder: bundle.file('pixel_decoder'),
    pixelSkip: bundle.file('pixel_skip'),
    pixelSplit: bundle.file('pixel_split'),
    pixelSkipAfter: options.pixelSkipAfter,
    bundleDevice: m.device,
    dtype: m.dtype,
    resolution: m.resolution,
    maskSize: m.mask_size,
    textLength: m.text.max_length,
    hiddenSize: m.hidden_size,
    mean: [...m.normalization.mean],
    std: [...m.normalization.std],
    warmup: options.warmup,
  };
}

/** The tracker's load options, or undefined for a bundle without the video tracker. */
export function trackerOptions(bundle: Bundle, model: NativeModel): NativeTrackerOptions | undefined {
  const m = bundle.manifest;
  const v = m.video;
  if (!v) return undefined;
  return {
    model,
    neck: bundle.file('tracker_neck'),
    decodeMulti: bundle.file('tracker_decode_multi'),
    decodeSingle: bundle.file('tracker_decode_single'),
    maskPrompt: bundle.file('tracker_mask_prompt'),
    memoryEncoder: bundle.file('memory_encoder'),
    memoryEncoderPoints: bundle.file('memory_encoder_points'),
    memoryAttention: bundle.file('memory_attention'),
    interactiveMulti: bundle.file('tracker_interactive_multi'),
    interactiveSingle: bundle.file('tracker_interactive_single'),
    dtype: m.dtype,
    resolution: m.resolution,
    lowResMaskSize: v.low_res_mask_size,
    hiddenSize: v.hidden_size,
    numMaskmem: v.num_maskmem,
    maxCondFrames: v.max_cond_frame_num,
    maxObjectPointers: v.max_object_pointers,
    multimaskOutputInSam: v.multimask_output_in_sam,
    multimaskMinPoints: v.multimask_min_pt_num,
    multimaskMaxPoints: v.multimask_max_pt_num,
    multimaskOutputForTracking: v.multimask_output_for_tracking,
    mean: [...m.normalization.mean],
    std: [...m.normalization.std],
  };
}
