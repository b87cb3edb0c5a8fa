/**
 * The only module that loads the compiled addon. Everything else imports these types.
 * The addon is found at build/Release/sam3.node under the package root, or at $SAM3_ADDON_PATH.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

export interface NativeTracker {
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
  dispose(): void;
}

export interface NativeEngine {
  readonly device: string;
  loadModel(options: NativeModelOptions): Promise<NativeModel>;
  loadTracker(options: NativeTrackerOptions): Promise<NativeTracker>;
  stats(): NativeEngineStats;
  close(): void;
}

export interface NativeAddon {
  Engine: new (device: string, threads?: number) => NativeEngine;
  rleEncode(mask: Uint8Array, height: number, width: number, order?: 'row' | 'column'): string;
  runtimeInfo(): { torchVersion: string; cudaAvailable: boolean; cudaDeviceCount: number; interopThreads: number; defaultThreads: number };
}

export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let cached: NativeAddon | undefined;

export function addon(): NativeAddon {
  if (cached) return cached;
  const file = process.env.SAM3_ADDON_PATH ?? path.join(packageRoot, 'build', 'Release', 'sam3.node');
  if (!existsSync(file)) {
    throw new Sam3Error(ErrorCode.Addon, `the native addon is not built (${file} is missing): run 'npm install' or 'npm run build:native'`);
  }
  try {
    cached = createRequire(import.meta.url)(file) as NativeAddon;
  } catch (err) {
    throw new Sam3Error(ErrorCode.Addon, `cannot load the native addon ${file}: ${(err as Error).message}`, undefined, { cause: err });
  }
  return cached;
}
