/**
 * sam3-server library API: load a SAM 3 model bundle and segment images and videos from Node.
 *
 *   const model = await Sam3Model.load('models/demo');
 *   const features = await model.encodeImage(jpegBytes);
 *   const result = await model.segment(features, { text: 'person' }, { threshold: 0.5 });
 *   features.dispose(); model.dispose();
 *
 * Everything a program needs is exported here; the addon's own types (src/native.ts) stay private.
 */
export { Sam3Model } from './model.js';
export type { Segmentation, SegmentOptions, LoadOptions } from './model.js';
export { ImageFeatures } from './features.js';
export {
  MAX_BOXES_PER_PROMPT,
  MAX_POINTS_PER_PROMPT,
  MAX_PROMPT_CHARS,
  boxProblem,
  pointProblem,
  validateBox,
  validatePoint,
  validatePointLabel,
  validateBoxLabel,
  labelProblem,
  validateThreshold,
  promptText,
  checkFrameIndex,
  checkCount,
} from './prompts.js';
export type { Box, BoxPrompt, Label, Point, PointLabel, Prompt, Space } from './prompts.js';
export { MaskLogits } from './interactive.js';
export type { InteractivePrompt, InteractivePoint, InteractiveOptions, InteractiveSegmentation } from './interactive.js';
export { MASK_FORMATS, formatMasks, maskToPng, maskToPolygons } from './mask-formats.js';
export type { FormattedMask, MaskFormat, PngMask, PolygonMask } from './mask-formats.js';
export { Sam3Error, ErrorCode, USER_ERROR_CODES } from './errors.js';
export type { Sam3ErrorOptions } from './errors.js';
export { Engine, createEngine, deviceBatchDefault } from './engine.js';
export type { EngineStats } from './engine.js';
export { openBundle, manifestSchema, BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION } from './bundle.js';
export type { Bundle, ConceptConfig, Manifest, BundleOptions } from './bundle.js';
export { decodeImage, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE } from './image.js';
export type { DecodedImage, DecodeOptions, ImageInput, RgbImage } from './image.js';
export { HandleCache } from './cache.js';
export type { CacheOptions, CacheStats, Lease } from './cache.js';
export { PromptTokenizer } from './tokenizer.js';
export { encodeRle, decodeRle } from './rle.js';
export type { RleMask } from './rle.js';
export { heapStats, keepNativeHeapTrimmed, onNativeWarning, runtimeInfo, trimNativeHeap, type HeapStats, type NativeWarning, type NativeWarningListener } from './runtime.js';
export { VideoSession } from './video/session.js';
export type { VideoPrompt, VideoPoint, PromptResult, FrameResult, TrackedObject, Direction, PropagateOptions, SessionStatus, VideoSessionOptions } from './video/session.js';
export { openVideo } from './video/frames.js';
export type { FrameSource, VideoInfo, RgbFrame, OpenVideoOptions } from './video/source.js';
