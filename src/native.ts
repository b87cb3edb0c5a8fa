/**
 * The only module that loads the compiled addon. Everything else imports these types.
 * Which file it is ($SAM3_ADDON_PATH, build/Release/sam3.node, or the prebuilt package) and how a
 * prebuilt one finds libtorch: src/addon-loader.ts.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { loadAddon, locateAddon, packageRoot, prebuiltPackageName } from './addon-loader.js';
import { ErrorCode, Sam3Error } from './errors.js';

export interface NativeTimings {
  [stage: string]: number;
}

export interface NativeEngineStats {
  device: string;
  threads: number;
  queued: number;
  running: number;
  completed: number;
  closed: boolean;
}

export interface NativeModelOptions {
  /** vision_backbone.pt (the ViT) and vision_neck.pt (the detector's FPN neck over its output). */
  visionBackbone: string;
  visionNeck: string;
  textEncoder: string;
  headText: string;
  headTextBoxes: string;
  /** pixel_decoder.pt: run only for the prompts that found something. */
  pixelDecoder: string;
  /** pixel_skip.pt / pixel_split.pt: the same decoder split, for images asked many prompts. */
  pixelSkip: string;
  pixelSplit: string;
  /** See LoadOptions.pixelSkipAfter; -1: never. */
  pixelSkipAfter?: number;
  bundleDevice: string;
  dtype: string;
  resolution: number;
  maskSize: number;
  textLength: number;
  hiddenSize: number;
  mean: number[];
  std: number[];
  warmup?: boolean;
}

export interface NativeImageFeatures {
  readonly width: number;
  readonly height: number;
  readonly bytes: number;
  /** Whether the pixel decoder's share of this image is computed and kept (LoadOptions.pixelSkipAfter). */
  readonly pixelSkip: boolean;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativeTextEmbedding {
  readonly bytes: number;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativeQuery {
  text: NativeTextEmbedding;
  boxes?: Float64Array;
  labels?: Uint8Array;
}

export interface NativeQueryResult {
  scores: Float32Array;
  boxes: Float32Array;
  masks: string[];
  height: number;
  width: number;
}

export interface NativeModel {
  readonly disposed: boolean;
  encodeImages(images: { data: Uint8Array; width: number; height: number }[], options?: { keepBackbone?: boolean }): Promise<{ features: NativeImageFeatures[]; timings: NativeTimings }>;
  encodeTexts(ids: Int32Array, mask: Uint8Array, count: number): Promise<{ embeddings: NativeTextEmbedding[]; timings: NativeTimings }>;
  segment(
    features: NativeImageFeatures,
    queries: NativeQuery[],
    threshold: number,
    options?: { maskThreshold?: number; maxBatch?: number },
  ): Promise<{ queries: NativeQueryResult[]; timings: NativeTimings }>;
  info(): { device: string; dtype: string; resolution: number; maskSize: number; loadMs: number; warmupMs: number };
  dispose(): void;
}

export interface NativeTrackerOptions {
  /** The model on the same engine: the tracker runs its ViT (one copy of the weights for both). */
  model: NativeModel;
  /** tracker_neck.pt: the tracker's FPN neck over the ViT output. */
  neck: string;
  decodeMulti: string;
  decodeSingle: string;
  maskPrompt: string;
  memoryEncoder: string;
  memoryEncoderPoints: string;
  memoryAttention: string;
  /** tracker_interactive_multi.pt / _single.pt: Sam3TrackerModel's prompt encoder and mask decoder on an image. */
  interactiveMulti: string;
  interactiveSingle: string;
  dtype: string;
  resolution: number;
  lowResMaskSize: number;
  hiddenSize: number;
  numMaskmem: number;
  maxCondFrames: number;
  maxObjectPointers: number;
  multimaskOutputInSam: boolean;
  multimaskMinPoints: number;
  multimaskMaxPoints: number;
  multimaskOutputForTracking: boolean;
  mean: number[];
  std: number[];
}

/** Native per-video tracking state; dispose() drops the JS reference (queued jobs keep theirs). */
export interface NativeVideoHandle {
  dispose(): void;
  readonly disposed: boolean;
}

export interface NativeStepResult {
  needFrame?: true;
  frame: number;
  objIds: number[];
  masks: string[];
  boxes: Float32Array;
  scores: Float32Array;
  logits: Float32Array;
  memoryBytes: number;
  height: number;
  width: number;
}

export interface NativePromptEntry {
  objId: number;
  points?: Float64Array;
  labels?: Int32Array;
  mask?: Uint8Array;
}

export interface NativeFrame {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Sam3VideoConfig's concept-tracking settings, by their transformers names (bundle.ts ConceptConfig). */
export type NativeConceptConfig = Readonly<Record<string, unknown>>;

/** One frame of concept tracking after post-processing: objects in id order. */
export interface NativeConceptFrame {
  frame: number;
  objIds: number[];
  /** Per object: the concept id (prompt id) that found it, -1 for objects of box/point prompts. */
  concepts: number[];
  masks: string[];
  boxes: Float32Array;
  /** The detection score of the object when it was found. */
  scores: Float32Array;
  /** The tracker's score on this frame (0 when it has none). */
  trackerScores: Float32Array;
  height: number;
  width: number;
}

export interface NativeConceptTrack {
  /** The frames ready to emit (a propagation holds frames back for hotstart_delay frames). */
  frames: NativeConceptFrame[];
  /** Every object the tracker holds after this frame, in creation order. */
  tracked: number[];
  /** Object ids the native concept state keeps entries for (live ones, and removed ones still buffered). */
  stateIds: number;
  memoryBytes: number;
}

/** Low-res mask logits of an interactive call, on the device, for the next call on the object. */
export interface NativeMaskLogits {
  readonly bytes: number;
  readonly disposed: boolean;
  dispose(): void;
}

export interface NativeInteractiveObject {
  /** Points as normalised [x, y] pairs: clicks (labels 1 / 0), then a box's corners (labels 2, 3). */
  points: Float64Array;
  labels: Int32Array;
  maskInput?: NativeMaskLogits | null;
}

export interface NativeInteractiveResult {
  objects: {
    masks: string[];
    iouScores: Float32Array;
    boxes: Float32Array;
    objectScoreLogit: number;
    maskInput: NativeMaskLogits;
  }[];
  height: number;
  width: number;
  /** The features' bytes after the call (the tracker's features are added by the first one). */
  featureBytes: number;
  timings: NativeTimings;
}

export interface NativeTracker {
  /** Interactive segmentation on an image's features (the tracker's prompt encoder and mask decoder). */
  interactive(features: NativeImageFeatures, objects: NativeInteractiveObject[], options: { multimask: boolean }): Promise<NativeInteractiveResult>;
  open(options: { numFrames: number; width: number; height: number; featureCacheBytes: number; memoryWindow?: number }): NativeVideoHandle;
  prompt(
    video: NativeVideoHandle,
    frame: number,
    entries: NativePromptEntry[],
    rgb?: NativeFrame | null,
    /** The frame's features encoded with keepBackbone (a text prompt's detector pass). */
    features?: NativeImageFeatures | null,
  ): Promise<NativeStepResult>;
  step(video: NativeVideoHandle, frame: number, reverse: boolean, rgb?: NativeFrame | null): Promise<NativeStepResult>;
  removeObject(video: NativeVideoHandle, objId: number): Promise<{ removed: boolean; memoryBytes: number }>;
  reset(video: NativeVideoHandle): Promise<number>;
  /** Adds a text concept to the video (its prompt id); `config` applies from the first concept on. */
  conceptAdd(video: NativeVideoHandle, text: NativeTextEmbedding, config: NativeConceptConfig, threshold?: number): Promise<number>;
  /** Stops tracking a concept; resolves with the ids of the objects removed with it. */
  conceptRemove(video: NativeVideoHandle, conceptId: number): Promise<number[]>;
  /** Detection + tracking on one frame with every concept (features: the frame encoded with keepBackbone). */
  conceptTrack(
    video: NativeVideoHandle,
    frame: number,
    reverse: boolean,
    features: NativeImageFeatures,
    options: { mode: 'forward' | 'propagate'; first: boolean; last: boolean },
  ): Promise<NativeConceptTrack>;
  dispose(): void;
}

export interface NativeEngine {
  readonly device: string;
  loadModel(options: NativeModelOptions): Promise<NativeModel>;
  loadTracker(options: NativeTrackerOptions): Promise<NativeTracker>;
  stats(): NativeEngineStats;
  close(): void;
  /** Raises TORCH_WARN `times` times on the engine thread (tests of the warning relay). */
  warnForTest(message: string, times: number): Promise<void>;
}

/** One of libtorch's own warnings (TORCH_WARN), with how often it was raised since the last delivery. */
export interface NativeWarning {
  message: string;
  /** libtorch's file:line that raised it. */
  source: string;
  deprecation: boolean;
  count: number;
}

/** The C heap as glibc's allocator sees it (mallinfo2); null on other C libraries. */
export interface HeapStats {
  /** Bytes handed out (small chunks and mmapped ones). */
  inUseBytes: number;
  /** Bytes free but still held by the allocator (fragmentation shows here and in RSS). */
  freeBytes: number;
  /** Bytes in chunks mapped on their own (large allocations). */
  mmapBytes: number;
  /**
   * Allocations of at least this many bytes are mapped on their own and returned to the system when
   * freed (SAM3_MALLOC_MMAP_THRESHOLD or glibc's MALLOC_MMAP_THRESHOLD_, when set); null where
   * glibc's adaptive rule is in place (the default).
   */
  mmapThresholdBytes: number | null;
}

export interface NativeAddon {
  Engine: new (device: string, threads?: number) => NativeEngine;
  rleEncode(mask: Uint8Array, height: number, width: number, order?: 'row' | 'column'): string;
  /** Each foreground pixel's 8-connected component area (tests of native/core/mask_ops). */
  componentAreas(mask: Uint8Array, batch: number, height: number, width: number): Int32Array;
  /** fill_holes_in_mask_scores on [batch, 1, height, width] logits (tests of native/core/mask_ops). */
  fillHoles(logits: Float32Array, batch: number, height: number, width: number, maxArea: number): Float32Array;
  heapStats(): HeapStats | null;
  runtimeInfo(): { torchVersion: string; cudaAvailable: boolean; cudaDeviceCount: number; interopThreads: number; defaultThreads: number; nnpackEnabled: boolean };
  /**
   * Routes libtorch's warnings from the JS thread and the engine threads to `listener` on the JS
   * thread (batched; `dropped`: distinct warnings beyond the queue's bound); null: back to stderr.
   */
  setWarningListener(listener: ((warnings: NativeWarning[], dropped: number) => void) | null): void;
  trimNativeHeap(minFreeBytes: number): Promise<{ trimmed: boolean; freeBytes: number }>;
}

export { packageRoot };

let cached: NativeAddon | undefined;

/** The addon, loaded once (src/addon-loader.ts says which file and how). */
export function addon(): NativeAddon {
  if (cached) return cached;
  const location = locateAddon();
  if (!location) {
    throw new Sam3Error(
      ErrorCode.Addon,
      `the native addon is not built (no $SAM3_ADDON_PATH, no ${path.join(packageRoot, 'build', 'Release', 'sam3.node')}, no ${prebuiltPackageName()} package): run 'npm install' ('npm rebuild sam3-server' where it is a dependency) or 'npm run build:native'`,
    );
  }
  if (!existsSync(location.path)) throw new Sam3Error(ErrorCode.Addon, `the native addon ${location.path} (from $SAM3_ADDON_PATH) does not exist`);
  cached = loadAddon<NativeAddon>(location);
  return cached;
}
