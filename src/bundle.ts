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
export const BUNDLE_FORMAT_VERSION = 1;

const fileEntry = z.object({
  path: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});

const triple = z.tuple([z.number(), z.number(), z.number()]);

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
    vision_encoder: fileEntry,
    text_encoder: fileEntry,
    head_text: fileEntry,
    head_text_boxes: fileEntry,
    tokenizer: fileEntry,
  }),
});

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
  for (const [name, entry] of Object.entries(manifest.files)) {
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
  return { dir: root, manifest, file: (name) => path.resolve(root, manifest.files[name].path) };
}
