/**
 * Model bundles written by scripts/export_sam3.py: manifest.json + TorchScript pieces + tokenizer.json.
 * The manifest is validated before anything is handed to libtorch, so a wrong folder, a bundle from
 * an incompatible exporter or a truncated file fails with a message that names the problem.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { z } from 'zod';

import { ErrorCode, Sam3Error } from './errors.js';

export const BUNDLE_FORMAT = 'sam3-bundle';
export const BUNDLE_FORMAT_VERSION = 8;

const fileEntry = z.object({
  path: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});

const triple = z.tuple([z.number(), z.number(), z.number()]);

const unit = z.number().min(0).max(1);
const count = z.number().int().nonnegative();

/** Sam3VideoConfig's fields for text-concept tracking in video, by their transformers names. */
export const conceptSchema = z.looseObject({
  score_threshold_detection: unit,
  det_nms_thresh: unit,
  assoc_iou_thresh: unit,
  trk_assoc_iou_thresh: unit,
  new_det_thresh: unit,
  recondition_on_trk_masks: z.boolean(),
  hotstart_delay: count,
  hotstart_unmatch_thresh: count,
  hotstart_dup_thresh: count,
  suppress_unmatched_only_within_hotstart: z.boolean(),
  init_trk_keep_alive: z.number().int(),
  max_trk_keep_alive: z.number().int(),
  min_trk_keep_alive: z.number().int(),
  suppress_overlapping_based_on_recent_occlusion_threshold: unit,
  decrease_trk_keep_alive_for_empty_masklets: z.boolean(),
  fill_hole_area: count,
  max_num_objects: z.number().int().positive(),
  recondition_every_nth_frame: z.number().int(),
  high_conf_thresh: unit,
  high_iou_thresh: unit,
  low_res_mask_size: z.number().int().positive(),
});

export type ConceptConfig = z.infer<typeof conceptSchema>;

export const manifestSchema = z.looseObject({
  format: z.literal(BUNDLE_FORMAT),
  format_version: z.number().int(),
  source: z.looseObject({ checkpoint: z.string(), model_type: z.string() }),
  versions: z.looseObject({ torch: z.string(), transformers: z.string() }),
  created_at: z.string(),
  device: z.string(),
  dtype: z.enum(['float32', 'bfloat16', 'float16']),
  resolution: z.number().int().positive(),
  patch_size: z.number().int().positive(),
  /** The ViT's output grid (resolution / patch_size) and width, shared by the detector and tracker necks. */
  vit: z.looseObject({ grid: z.number().int().positive(), hidden_size: z.number().int().positive() }),
  mask_size: z.number().int().positive(),
  num_queries: z.number().int().positive(),
  hidden_size: z.number().int().positive(),
  text: z.looseObject({
    max_length: z.number().int().positive(),
    pad_token_id: z.number().int().nonnegative(),
    visual_prompt: z.string().min(1),
  }),
  normalization: z.object({ mean: triple, std: triple }),
  files: z.object({
    // The ViT, and the detector's FPN neck over its output (one ViT for the detector and the tracker).
    vision_backbone: fileEntry,
    vision_neck: fileEntry,
    text_encoder: fileEntry,
    head_text: fileEntry,
    head_text_boxes: fileEntry,
    // The mask decoder's pixel decoder, run only for prompts where some query passes the threshold.
    pixel_decoder: fileEntry,
    // The same decoder split at its linearity: pixel_skip once per image (its convolutions of the
    // image's skip features), pixel_split per prompt after that (see native/core/detector.cc Segment).
    pixel_skip: fileEntry,
    pixel_split: fileEntry,
    tokenizer: fileEntry,
    // The video tracker (bundles exported from a sam3_video checkpoint such as facebook/sam3).
    tracker_neck: fileEntry.optional(),
    tracker_decode_multi: fileEntry.optional(),
    tracker_decode_single: fileEntry.optional(),
    tracker_mask_prompt: fileEntry.optional(),
    memory_encoder: fileEntry.optional(),
    memory_encoder_points: fileEntry.optional(),
    memory_attention: fileEntry.optional(),
    // Interactive segmentation on images (Sam3TrackerModel's prompt encoder and mask decoder; format 8).
    tracker_interactive_multi: fileEntry.optional(),
    tracker_interactive_single: fileEntry.optional(),
  }),
  video: z
    .looseObject({
      hidden_size: z.number().int().positive(),
      memory_dim: z.number().int().positive(),
      feature_size: z.number().int().positive(),
      low_res_mask_size: z.number().int().positive(),
      num_maskmem: z.number().int().nonnegative(),
      max_cond_frame_num: z.number().int(),
      max_object_pointers: z.number().int().positive(),
      multimask_output_in_sam: z.boolean(),
      multimask_min_pt_num: z.number().int(),
      multimask_max_pt_num: z.number().int(),
      multimask_output_for_tracking: z.boolean(),
      /** Sam3VideoConfig's concept-tracking settings (detection, association, hotstart, suppression, hole filling). */
      concept: conceptSchema,
    })
    .optional(),
});

/** The pieces of the tracker (video tracking and interactive segmentation on images); all present or none. */
export const TRACKER_FILES = [
  'tracker_neck',
  'tracker_decode_multi',
  'tracker_decode_single',
  'tracker_mask_prompt',
  'memory_encoder',
  'memory_encoder_points',
  'memory_attention',
  'tracker_interactive_multi',
  'tracker_interactive_single',
] as const;

export type Manifest = z.infer<typeof manifestSchema>;
export type BundleFile = keyof Manifest['files'];

export interface Bundle {
  dir: string;
  manifest: Manifest;
  file(name: BundleFile): string;
}

export interface BundleOptions {
  /** Check every file's sha256 against the manifest (reads every byte; on by default). */
  verify?: boolean;
}

function bundleError(dir: string, message: string, cause?: unknown): Sam3Error {
  return new Sam3Error(ErrorCode.Bundle, `model bundle ${dir}: ${message}`, { bundle: dir }, { cause });
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function openBundle(dir: string, options: BundleOptions = {}): Promise<Bundle> {
  const root = path.resolve(dir);
  let raw: string;
  try {
    raw = await readFile(path.join(root, 'manifest.json'), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'manifest.json not found (is this a folder made by scripts/export_sam3.py?)' : `cannot read manifest.json (${code})`;
    throw bundleError(root, why, err);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw bundleError(root, `manifest.json is not valid JSON: ${(err as Error).message}`, err);
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    const where = first ? first.path.join('.') || '(root)' : '(root)';
    throw bundleError(root, `manifest.json is invalid at '${where}': ${first?.message ?? 'unknown problem'}`);
  }
  const manifest = parsed.data;
  if (manifest.format_version !== BUNDLE_FORMAT_VERSION) {
    throw bundleError(root, `bundle format version ${manifest.format_version} is not supported (this server reads version ${BUNDLE_FORMAT_VERSION}); export the checkpoint again with this version's scripts/export_sam3.py`);
  }
  const trackerFiles = TRACKER_FILES.filter((name) => manifest.files[name] !== undefined);
  if ((trackerFiles.length > 0 || manifest.video) && (trackerFiles.length !== TRACKER_FILES.length || !manifest.video)) {
    throw bundleError(root, 'manifest.json lists part of the video tracker: export the checkpoint again');
  }
  for (const [name, entry] of Object.entries(manifest.files)) {
    if (!entry) continue;
    const file = path.resolve(root, entry.path);
    if (path.relative(root, file).startsWith('..')) throw bundleError(root, `file '${name}' points outside the bundle`);
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch (err) {
      throw bundleError(root, `file '${entry.path}' (${name}) is missing`, err);
    }
    if (size !== entry.bytes) {
      throw bundleError(root, `file '${entry.path}' has ${size} bytes but the manifest says ${entry.bytes} (truncated or replaced?)`);
    }
    if (options.verify !== false && (await sha256(file)) !== entry.sha256) {
      throw bundleError(root, `file '${entry.path}' does not match its sha256 in the manifest (corrupt or replaced)`);
    }
  }
  return {
    dir: root,
    manifest,
    file: (name) => {
      const entry = manifest.files[name];
      if (!entry) throw bundleError(root, `has no '${name}' (export a sam3_video checkpoint for video tracking)`);
      return path.resolve(root, entry.path);
    },
  };
}
