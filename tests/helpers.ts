/**
 * Test fixtures: a tiny random SAM 3 checkpoint and its exported bundle (built once per change of the
 * Python tools, cached under .cache/), images generated with sharp, and reference outputs computed
 * by transformers' eager Sam3Model through scripts/make_reference.py.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import sharp from 'sharp';

const run = promisify(execFile);

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const python = process.env.SAM3_PYTHON ?? path.join(root, '.venv', 'bin', 'python');

/** Hash of the Python tools: a cached fixture is rebuilt when they change. */
export function toolsHash(): string {
  const h = createHash('sha256');
  const dirs = [path.join(root, 'scripts'), path.join(root, 'scripts', 'sam3tools')];
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    for (const f of readdirSync(dir).sort()) {
      if (f.endsWith('.py') || f.endsWith('.txt')) h.update(f).update(readFileSync(path.join(dir, f)));
    }
  }
  return h.digest('hex').slice(0, 16);
}

export async function py(args: string[], timeoutMs = 600_000): Promise<string> {
  try {
    const { stdout } = await run(python, args, { cwd: root, maxBuffer: 256 * 1024 * 1024, timeout: timeoutMs });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`python ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

export interface Fixture {
  checkpoint: string;
  bundle: string;
}

const pending = new Map<string, Promise<Fixture>>();

/** A tiny checkpoint (seed, image size) and its bundle (exported in dtype), cached under .cache/fixtures. */
export function fixture(seed = 1, imageSize = 112, dtype: 'float32' | 'bfloat16' = 'float32'): Promise<Fixture> {
  const key = `${seed}-${imageSize}-${dtype === 'float32' ? '' : `${dtype}-`}${toolsHash()}`;
  let p = pending.get(key);
  if (!p) {
    p = (async () => {
      const dir = path.join(root, '.cache', 'fixtures', key);
      const checkpoint = path.join(dir, 'checkpoint');
      const bundle = path.join(dir, 'bundle');
      if (!existsSync(path.join(bundle, 'manifest.json'))) {
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir, { recursive: true });
        await py(['scripts/make_tiny_checkpoint.py', '--out', checkpoint, '--seed', String(seed), '--image-size', String(imageSize)]);
        await py(['scripts/export_sam3.py', '--checkpoint', checkpoint, '--out', bundle, '--dtype', dtype]);
      }
      return { checkpoint, bundle };
    })();
    pending.set(key, p);
  }
  return p;
}

export async function tempDir(prefix = 'sam3-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/** A deterministic picture: coloured rectangles and a disc on a gradient, so features are not flat. */
export async function syntheticImage(width: number, height: number, seed = 0): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  let s = seed * 7919 + 17;
  const rand = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const rects = Array.from({ length: 4 }, () => ({
    x0: Math.floor(rand() * width * 0.7),
    y0: Math.floor(rand() * height * 0.7),
    w: Math.floor(width * (0.15 + rand() * 0.3)),
    h: Math.floor(height * (0.15 + rand() * 0.3)),
    c: [Math.floor(rand() * 255), Math.floor(rand() * 255), Math.floor(rand() * 255)],
  }));
  const cx = width * (0.3 + rand() * 0.4);
  const cy = height * (0.3 + rand() * 0.4);
  const r = Math.min(width, height) * 0.2;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      let c = [Math.floor((255 * x) / width), Math.floor((255 * y) / height), 128];
      for (const q of rects) if (x >= q.x0 && x < q.x0 + q.w && y >= q.y0 && y < q.y0 + q.h) c = q.c;
      if ((x - cx) ** 2 + (y - cy) ** 2 < r * r) c = [250, 240, 20];
      data[i] = c[0]!;
      data[i + 1] = c[1]!;
      data[i + 2] = c[2]!;
    }
  }
  return data;
}

export async function pngImage(width: number, height: number, seed = 0): Promise<Buffer> {
  return sharp(await syntheticImage(width, height, seed), { raw: { width, height, channels: 3 } }).png().toBuffer();
}

export async function jpegImage(width: number, height: number, seed = 0, orientation?: number): Promise<Buffer> {
  let img = sharp(await syntheticImage(width, height, seed), { raw: { width, height, channels: 3 } });
  if (orientation !== undefined) img = img.withMetadata({ orientation });
  return img.jpeg({ quality: 90 }).toBuffer();
}

/** Decodes a COCO compressed RLE string into a column-major 0/1 array. */
export function decodeRle(counts: string, h: number, w: number): Uint8Array {
  const cnts: number[] = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0;
    let k = 0;
    let more = true;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (cnts.length > 2) x += cnts[cnts.length - 2]!;
    cnts.push(x);
  }
  const out = new Uint8Array(h * w);
  let pos = 0;
  let v = 0;
  for (const c of cnts) {
    if (v) out.fill(1, pos, pos + c);
    pos += c;
    v ^= 1;
  }
  if (pos !== h * w) throw new Error(`RLE covers ${pos} pixels, expected ${h * w}`);
  return out;
}

export function pixelDiff(a: string, b: string, h: number, w: number): number {
  if (a === b) return 0;
  const x = decodeRle(a, h, w);
  const y = decodeRle(b, h, w);
  let n = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) n++;
  return n;
}

export interface ReferenceQuery {
  text_used: string;
  input_ids: number[];
  scores: number[];
  boxes: number[][];
  masks: { size: [number, number]; counts: string }[];
  all_scores: number[];
}

export interface ReferenceOutput {
  cases: Record<string, { image_size: { width: number; height: number }; queries: ReferenceQuery[] }>;
  tokens?: Record<string, { input_ids: number[]; attention_mask: number[] }>;
}

export interface ReferenceCase {
  name: string;
  image: string;
  queries: { text: string | null; boxes: number[][] | null; labels: boolean[] | null }[];
  threshold: number;
}

export async function reference(
  checkpoint: string,
  images: Record<string, string>,
  cases: ReferenceCase[],
  tokens?: string[],
  dtype: 'float32' | 'bfloat16' = 'float32',
): Promise<ReferenceOutput> {
  const dir = await tempDir('sam3-ref-');
  const casesFile = path.join(dir, 'cases.json');
  const outFile = path.join(dir, 'out.json');
  writeFileSync(casesFile, JSON.stringify({ images, cases, tokens: tokens ?? [] }));
  await py(['scripts/make_reference.py', '--checkpoint', checkpoint, '--cases', casesFile, '--out', outFile, '--dtype', dtype]);
  const out = JSON.parse(readFileSync(outFile, 'utf8')) as ReferenceOutput;
  rmSync(dir, { recursive: true, force: true });
  return out;
}
