/**
 * sam3-server library API: load a SAM 3 model bundle and segment images from Node.
 *
 *   const model = await Sam3Model.load('models/demo');
 *   const features = await model.encodeImage(jpegBytes);
 *   const result = await model.segment(features, { text: 'person' }, { threshold: 0.5 });
 *   features.dispose(); model.dispose();
 */
export { Sam3Model, ImageFeatures, validateBox, validateThreshold, MAX_BOXES_PER_PROMPT, MAX_PROMPT_CHARS } from './model.js';
export type { Box, BoxPrompt, Prompt, RleMask, Segmentation, SegmentOptions, LoadOptions, ImageInput, RgbImage } from './model.js';
export { Sam3Error, ErrorCode, USER_ERROR_CODES } from './errors.js';
export { openBundle, manifestSchema, BUNDLE_FORMAT, BUNDLE_FORMAT_VERSION } from './bundle.js';
export type { Bundle, Manifest, BundleOptions } from './bundle.js';
export { decodeImage, DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE } from './image.js';
export type { DecodedImage, DecodeOptions } from './image.js';
export { HandleCache } from './cache.js';
export type { CacheOptions, CacheStats, Lease } from './cache.js';
export { PromptTokenizer } from './tokenizer.js';
export { encodeRle, runtimeInfo, createEngine } from './runtime.js';
export { VideoSession, decodeRle } from './video/session.js';
export type { VideoPrompt, VideoPoint, PromptResult, FrameResult, TrackedObject, Direction, PropagateOptions, SessionStatus, VideoSessionOptions } from './video/session.js';
export { openVideo } from './video/frames.js';
export type { FrameSource, VideoInfo, RgbFrame, OpenVideoOptions } from './video/frames.js';
