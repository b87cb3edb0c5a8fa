/**
 * The concept-tracking parity fixture (sam3tools/concept_demo.py): a 10-frame 96x72 video, the tiny
 * random sam3_video checkpoint with thresholds set for random weights, its bundle, and the
 * references of transformers' eager Sam3VideoModel (scripts/make_concept_reference.py), built once
 * per change of the Python tools under .cache/fixtures. The bfloat16 part (a bfloat16 bundle and the
 * references of cases_bfloat16.json in bfloat16 and float32) is built only when a test asks for it.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import type { FrameResult, PropagateOptions, VideoSession } from '../src/index.js';
import type { FrameSource, RgbFrame, VideoInfo } from '../src/video/source.js';
import { py, root, toolsHash } from './helpers.js';

export interface RefFrame {
  frame_index: number;
  object_ids: number[];
  scores: number[];
  masks: { size: [number, number]; counts: string }[];
  boxes: number[][];
  prompt_to_obj_ids: Record<string, number[]>;
}

export interface RefCase {
  prompts: string[];
  direction: 'forward' | 'backward';
  start_frame_index: number;
  max_frames: number | null;
  settings: Record<string, number | boolean>;
  frames: RefFrame[];
  stats: Record<string, unknown>;
}

export interface RefOp {
  op: 'prompt' | 'propagate' | 'remove';
  text?: string;
  frame?: number;
  start?: number;
  direction?: 'forward' | 'backward' | 'both';
  max_frames?: number | null;
  obj_id?: number;
  outputs: RefFrame[];
}

export interface RefOpCase {
  prompts: string[];
  settings: Record<string, number | boolean>;
  ops: RefOp[];
  stats: Record<string, unknown>;
}

export interface ConceptFixture {
  dir: string;
  checkpoint: string;
  bundle: string;
  cases: Record<string, RefCase>;
  opCases: Record<string, RefOpCase>;
}

/** The concept fixture: frames, checkpoint, bundle and reference, cached by the Python tools' hash. */
export async function conceptFixture(): Promise<ConceptFixture> {
  const dir = path.join(root, '.cache', 'fixtures', `concept-${toolsHash()}`);
  const ck = path.join(dir, 'checkpoint');
  const ref = path.join(dir, 'reference.json');
  const opRef = path.join(dir, 'op-reference.json');
  if (!existsSync(ref) || !existsSync(opRef)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const printed = await py(['scripts/make_concept_demo.py', '--out', dir, '--checkpoint-folder', ck]);
    const args = printed.trim().split('\n').pop()!.split(' ');
    await py(['scripts/make_tiny_checkpoint.py', ...args]);
    await py(['scripts/export_sam3.py', '--checkpoint', ck, '--out', path.join(dir, 'bundle')]);
    await py(['scripts/make_concept_reference.py', '--checkpoint', ck, '--cases', path.join(dir, 'op_cases.json'), '--out', opRef], 1_800_000);
    await py(['scripts/make_concept_reference.py', '--checkpoint', ck, '--cases', path.join(dir, 'cases.json'), '--out', `${ref}.tmp`], 1_800_000);
    writeFileSync(ref, readFileSync(`${ref}.tmp`));
  }
  return {
    dir,
    checkpoint: ck,
    bundle: path.join(dir, 'bundle'),
    cases: JSON.parse(readFileSync(ref, 'utf8')).cases,
    opCases: JSON.parse(readFileSync(opRef, 'utf8')).cases,
  };
}

export interface Bf16Fixture {
  bundle: string;
  /** cases_bfloat16.json by transformers in bfloat16, and the same cases in float32. */
  bf16: Record<string, RefCase | RefOpCase>;
  f32: Record<string, RefCase | RefOpCase>;
}

/** The bfloat16 part of the fixture: the checkpoint exported in bfloat16, and the references. */
export async function conceptBf16Fixture(fx: ConceptFixture): Promise<Bf16Fixture> {
  const bundle = path.join(fx.dir, 'bundle-bfloat16');
  const cases = path.join(fx.dir, 'cases_bfloat16.json');
  if (!existsSync(path.join(bundle, 'manifest.json'))) {
    await py(['scripts/export_sam3.py', '--checkpoint', fx.checkpoint, '--out', bundle, '--dtype', 'bfloat16']);
  }
  const refs: Record<string, Record<string, RefCase | RefOpCase>> = {};
  for (const dtype of ['bfloat16', 'float32']) {
    const out = path.join(fx.dir, `reference-bfloat16-cases-${dtype}.json`);
    if (!existsSync(out)) {
      await py(['scripts/make_concept_reference.py', '--checkpoint', fx.checkpoint, '--cases', cases, '--out', `${out}.tmp`, '--dtype', dtype], 1_800_000);
      renameSync(`${out}.tmp`, out);
    }
    refs[dtype] = JSON.parse(readFileSync(out, 'utf8')).cases;
  }
  return { bundle, bf16: refs.bfloat16!, f32: refs.float32! };
}

/** The fixture's PNG frames, in memory. */
export class PngFrames implements FrameSource {
  readonly info: VideoInfo;
  readonly path = 'concept-frames';
  constructor(private readonly frames: RgbFrame[]) {
    const { width, height } = frames[0]!;
    this.info = { totalFrames: frames.length, fps: 10, width, height, durationSeconds: frames.length / 10 };
  }
  static async load(dir: string): Promise<PngFrames> {
    const frames: RgbFrame[] = [];
    for (let t = 0; existsSync(path.join(dir, `frame_${String(t).padStart(3, '0')}.png`)); t++) {
      const { data, info } = await sharp(path.join(dir, `frame_${String(t).padStart(3, '0')}.png`)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      frames.push({ rgb: data, width: info.width, height: info.height });
    }
    return new PngFrames(frames);
  }
  async frame(i: number): Promise<RgbFrame> {
    return this.frames[i]!;
  }
  cachedBytes(): number {
    return 0;
  }
  async close(): Promise<void> {}
}

/**
 * Our propagation for a reference case. Our backward run includes its start frame, transformers'
 * reverse iterator starts one frame before it: the reference's backward start s is our s - 1, and
 * its max_frames m our m - 1.
 */
export function ourOptions(c: RefCase): PropagateOptions {
  if (c.direction === 'forward') return { direction: 'forward', startFrameIndex: c.start_frame_index, maxFrames: c.max_frames };
  return { direction: 'backward', startFrameIndex: c.start_frame_index - 1, maxFrames: c.max_frames === null ? null : c.max_frames - 1 };
}

/** A prompt op's result as a frame: the concept's objects on the prompt's frame. */
export async function promptFrame(session: VideoSession, frameIndex: number, text: string): Promise<FrameResult> {
  const r = await session.addPrompt({ frameIndex, text });
  return {
    frameIndex: r.frameIndex,
    objects: r.objIds.map((id, i) => ({ id, mask: r.masks[i]!, box: r.boxes[i]!, score: r.scores[i]!, logit: r.logits[i]!, concept: text })),
  };
}

/** The reference's box (inclusive pixel corners, xyxy) as our normalised [x, y, w, h]. */
export function refBox(box: number[], size: [number, number]): number[] {
  const [x0, y0, x1, y1] = box;
  const [H, W] = size;
  return [x0! / W, y0! / H, (x1! + 1 - x0!) / W, (y1! + 1 - y0!) / H];
}
