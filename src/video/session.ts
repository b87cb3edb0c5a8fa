/**
 * Video tracking sessions: prompts on frames, propagation forward / backward / both, over the
 * native tracker (native/video.cc, a C++ port of Sam3TrackerVideoModel's tracking loop). Frames are
 * decoded lazily from a FrameSource; the native side caches their vision features (bounded) and
 * asks for a frame's pixels only when it does not hold its features.
 */
import type { Box, ImageFeatures, RleMask, Sam3Model } from '../model.js';
import { validateBox, validateThreshold } from '../model.js';
import { ErrorCode, Sam3Error, callNative, invalid } from '../errors.js';
import type { NativeFrame, NativePromptEntry, NativeStepResult, NativeTracker, NativeVideoHandle } from '../native.js';
import type { FrameSource, VideoInfo } from './frames.js';

export interface VideoPoint {
  /** Normalised [x, y] in [0, 1]. */
  point: [number, number];
  /** 1: on the object, 0: background. */
  label: 0 | 1;
}

export interface VideoPrompt {
  frameIndex: number;
  /** The object a box/point prompt is for; omitted: a new object. Not used with text. */
  objId?: number;
  /** Runs the detector on the frame: every detection above `threshold` becomes a new object. */
  text?: string;
  /** Normalised [x, y, w, h]. */
  box?: Box;
  points?: VideoPoint[];
  /** A mask of the object (row-major, width*height bytes, nonzero = object), instead of a box/points. */
  mask?: Uint8Array;
  /** Detection threshold for text prompts. Default 0.5. */
  threshold?: number;
}

export interface PromptResult {
  frameIndex: number;
  /** The prompted object, or the first new one (null when a text prompt found nothing). */
  objId: number | null;
  /** Every object the prompt created or updated, in the order of masks. */
  objIds: number[];
  masks: RleMask[];
  boxes: Box[];
  scores: number[];
  /** Raw object-score logits (scores = sigmoid(logits)). */
  logits: number[];
}

export interface TrackedObject {
  id: number;
  mask: RleMask;
  box: Box;
  score: number;
  logit: number;
}

export interface FrameResult {
  frameIndex: number;
  objects: TrackedObject[];
}

export type Direction = 'forward' | 'backward' | 'both';

export interface PropagateOptions {
  direction?: Direction;
  /** Default: the earliest prompted frame. */
  startFrameIndex?: number;
  /** Frames to track after the start frame (null/undefined: to the end). */
  maxFrames?: number | null;
  signal?: AbortSignal;
}

export interface SessionStatus {
  totalFrames: number;
  framesTracked: number;
  objects: number[];
  prompts: number;
  memoryBytes: number;
  device: string;
  lastActivity: number;
  propagating: boolean;
}

export interface VideoSessionOptions {
  /** Bytes of frame features kept on the device. Default 256 MiB. */
  featureCacheBytes?: number;
  /** Tracked frames kept per object around the current frame and prompts (minimum: the model's memory). */
  memoryWindow?: number;
}

const DEFAULT_FEATURE_CACHE = 256 * 1024 * 1024;

/** Decodes a COCO compressed RLE string (column-major counts) into a row-major 0/1 mask. */
export function decodeRle(counts: string, height: number, width: number): Uint8Array {
  const runs: number[] = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0;
    let k = 0;
    let more = 1;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++;
      k++;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2]!;
    runs.push(x);
  }
  const out = new Uint8Array(height * width);
  let pos = 0;
  let value = 0;
  for (const run of runs) {
    if (value) {
      for (let i = pos; i < pos + run; i++) out[(i % height) * width + Math.floor(i / height)] = 1;
    }
    pos += run;
    value ^= 1;
  }
  return out;
}

export class VideoSession {
  private disposedFlag = false;
  private propagatingFlag = false;
  private readonly objectIds: number[] = [];
  private readonly removed = new Set<number>();
  private readonly promptFrames = new Map<number, Set<number>>();
  private readonly tracked = new Set<number>();
  private promptCount = 0;
  private nextId = 1;
  private memory = 0;
  private last = Date.now();

  private constructor(
    private readonly model: Sam3Model,
    private readonly tracker: NativeTracker,
    private readonly handle: NativeVideoHandle,
    readonly source: FrameSource,
  ) {}

  static async open(model: Sam3Model, tracker: NativeTracker, source: FrameSource, options: VideoSessionOptions = {}): Promise<VideoSession> {
    const info = source.info;
    const featureCacheBytes = options.featureCacheBytes ?? DEFAULT_FEATURE_CACHE;
    if (!Number.isFinite(featureCacheBytes) || featureCacheBytes < 0) throw invalid('featureCacheBytes must be a non-negative number');
    const open: Parameters<NativeTracker['open']>[0] = {
      numFrames: info.totalFrames,
      width: info.width,
      height: info.height,
      featureCacheBytes: Math.floor(featureCacheBytes),
    };
    if (options.memoryWindow !== undefined) open.memoryWindow = options.memoryWindow;
    const handle = await callNative(async () => tracker.open(open));
    return new VideoSession(model, tracker, handle, source);
  }

  get info(): VideoInfo {
    return this.source.info;
  }

  get device(): string {
    return this.model.device;
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  get propagating(): boolean {
    return this.propagatingFlag;
  }

  status(): SessionStatus {
    return {
      totalFrames: this.info.totalFrames,
      framesTracked: this.tracked.size,
      objects: [...this.objectIds],
      prompts: this.promptCount,
      memoryBytes: this.memory,
      device: this.device,
      lastActivity: this.last,
      propagating: this.propagatingFlag,
    };
  }

  /** Adds a prompt on a frame and returns the masks of the objects it created or updated there. */
  async addPrompt(prompt: VideoPrompt): Promise<PromptResult> {
    this.ready('addPrompt');
    const frame = this.frameIndex(prompt?.frameIndex, 'frameIndex');
    const hasGeometry = prompt.box !== undefined || (prompt.points !== undefined && prompt.points.length > 0);
    let entries: NativePromptEntry[];
    // A text prompt's image features: their ViT output gives the tracker this frame's features
    // without running the ViT a second time.
    let detected: ImageFeatures | undefined;
    if (prompt.text !== undefined) {
      if (hasGeometry) throw invalid('a text prompt cannot be combined with a box or points in one request: send them separately');
      if (prompt.objId !== undefined && prompt.objId !== null) throw invalid('a text prompt creates new objects: leave objId out');
      if (typeof prompt.text !== 'string' || prompt.text.trim() === '') throw invalid('text must be a non-empty string');
      const threshold = prompt.threshold === undefined ? 0.5 : validateThreshold(prompt.threshold);
      const found = await this.detect(frame, prompt.text, threshold);
      entries = found.entries;
      if (entries.length === 0) {
        found.features.dispose();
        return { frameIndex: frame, objId: null, objIds: [], masks: [], boxes: [], scores: [], logits: [] };
      }
      detected = found.features;
    } else if (prompt.mask !== undefined) {
      if (hasGeometry) throw invalid('a mask prompt cannot be combined with a box or points');
      if (!(prompt.mask instanceof Uint8Array) || prompt.mask.length !== this.info.width * this.info.height) {
        throw invalid(`mask must be a Uint8Array of width*height = ${this.info.width * this.info.height} bytes`);
      }
      entries = [{ objId: this.objectIdFor(prompt.objId), mask: prompt.mask }];
    } else {
      if (!hasGeometry) throw invalid('a prompt needs text, a box, points or a mask');
      const id = this.objectIdFor(prompt.objId);
      const coords: number[] = [];
      const labels: number[] = [];
      if (prompt.box !== undefined) {
        const [x, y, w, h] = validateBox(prompt.box, 'box');
        coords.push(x, y, x + w, y + h);
        labels.push(2, 3);
      }
      for (const [i, p] of (prompt.points ?? []).entries()) {
        const pt = p?.point;
        if (!Array.isArray(pt) || pt.length !== 2 || !pt.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1)) {
          throw invalid(`points[${i}].point must be [x, y] normalised to [0, 1]`);
        }
        if (p.label !== 0 && p.label !== 1) throw invalid(`points[${i}].label must be 1 (object) or 0 (background)`);
        coords.push(pt[0], pt[1]);
        labels.push(p.label);
      }
      entries = [{ objId: id, points: Float64Array.from(coords), labels: Int32Array.from(labels) }];
    }
    let res: NativeStepResult;
    try {
      this.ready('addPrompt');
      res = await this.withFrame(frame, (rgb) => this.tracker.prompt(this.handle, frame, entries, rgb, detected?.native));
    } finally {
      detected?.dispose();
    }
    for (const e of entries) {
      if (!this.objectIds.includes(e.objId)) this.objectIds.push(e.objId);
      let frames = this.promptFrames.get(e.objId);
      if (!frames) this.promptFrames.set(e.objId, (frames = new Set()));
      frames.add(frame);
    }
    this.promptCount++;
    const wanted = entries.map((e) => e.objId);
    const out: PromptResult = { frameIndex: frame, objId: wanted[0] ?? null, objIds: [], masks: [], boxes: [], scores: [], logits: [] };
    for (const obj of this.objects(res)) {
      if (!wanted.includes(obj.id)) continue;
      out.objIds.push(obj.id);
      out.masks.push(obj.mask);
      out.boxes.push(obj.box);
      out.scores.push(obj.score);
      out.logits.push(obj.logit);
    }
    return out;
  }

  /** Tracks every object through the video, yielding each frame's result as soon as it is ready. */
  async *propagate(options: PropagateOptions = {}): AsyncGenerator<FrameResult> {
    this.ready('propagate');
    if (this.objectIds.length === 0) throw invalid('no objects to track: add a prompt first');
    const direction = options.direction ?? 'forward';
    if (direction !== 'forward' && direction !== 'backward' && direction !== 'both') {
      throw invalid(`direction must be forward, backward or both, got ${JSON.stringify(direction)}`);
    }
    const n = this.info.totalFrames;
    let start: number;
    if (options.startFrameIndex === undefined || options.startFrameIndex === null) {
      start = Math.min(...[...this.promptFrames.values()].flatMap((s) => [...s]));
    } else {
      start = this.frameIndex(options.startFrameIndex, 'startFrameIndex');
    }
    let max = n;
    if (options.maxFrames !== undefined && options.maxFrames !== null) {
      if (!Number.isInteger(options.maxFrames) || options.maxFrames < 0) throw invalid('maxFrames must be a non-negative integer or null');
      max = options.maxFrames;
    }
    // The frame order of transformers' propagate_in_video_iterator.
    const plan: Array<[number, boolean]> = [];
    if (direction !== 'backward') {
      const end = Math.min(start + max, n - 1);
      for (let f = start; f <= end; f++) plan.push([f, false]);
    }
    if (direction !== 'forward' && start > 0) {
      const end = Math.max(start - max, 0);
      for (let f = start; f >= end; f--) plan.push([f, true]);
    }
    this.propagatingFlag = true;
    try {
      for (let i = 0; i < plan.length; i++) {
        if (options.signal?.aborted || this.disposedFlag) return;
        const [frame, reverse] = plan[i]!;
        const next = plan[i + 1];
        const pending = this.withFrame(frame, (rgb) => this.tracker.step(this.handle, frame, reverse, rgb));
        // Decode the next frame while the engine works on this one.
        if (next) this.source.frame(next[0]).catch(() => undefined);
        const res = await pending;
        this.tracked.add(frame);
        yield { frameIndex: frame, objects: this.objects(res) };
      }
    } finally {
      this.propagatingFlag = false;
      this.last = Date.now();
    }
  }

  async removeObject(objId: number): Promise<void> {
    this.ready('removeObject');
    if (!this.objectIds.includes(objId)) {
      throw new Sam3Error(ErrorCode.UnknownObject, `object ${objId} is not tracked in this session (tracked: ${this.objectIds.join(', ') || 'none'})`);
    }
    const res = await callNative(() => this.tracker.removeObject(this.handle, objId));
    this.objectIds.splice(this.objectIds.indexOf(objId), 1);
    this.promptFrames.delete(objId);
    this.removed.add(objId);
    this.memory = res.memoryBytes;
    this.last = Date.now();
  }

  async reset(): Promise<void> {
    this.ready('reset');
    this.memory = await callNative(() => this.tracker.reset(this.handle));
    this.objectIds.length = 0;
    this.promptFrames.clear();
    this.removed.clear();
    this.tracked.clear();
    this.promptCount = 0;
    this.nextId = 1;
    this.last = Date.now();
  }

  async dispose(): Promise<void> {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    this.handle.dispose();
    await this.source.close();
  }

  // ------------------------------------------------------------------------------------------

  private ready(op: string): void {
    if (this.disposedFlag) throw new Sam3Error(ErrorCode.Disposed, `${op}: the video session has been closed`);
    if (this.propagatingFlag && op !== 'propagate-step') {
      throw new Sam3Error(ErrorCode.SessionBusy, `${op}: the session is propagating; wait for it to finish (or cancel it) first`);
    }
    this.last = Date.now();
  }

  private frameIndex(value: unknown, name: string): number {
    const n = this.info.totalFrames;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= n) {
      throw new Sam3Error(ErrorCode.FrameRange, `${name} must be an integer frame index within [0, ${n - 1}], got ${JSON.stringify(value)}`, {
        totalFrames: n,
      });
    }
    return value;
  }

  private objectIdFor(objId: number | null | undefined): number {
    if (objId === undefined || objId === null) {
      while (this.objectIds.includes(this.nextId) || this.removed.has(this.nextId)) this.nextId++;
      return this.nextId++;
    }
    if (!Number.isInteger(objId) || objId < 0 || objId > 2 ** 31 - 1) throw invalid(`objId must be a non-negative integer, got ${JSON.stringify(objId)}`);
    if (this.removed.has(objId)) {
      throw new Sam3Error(ErrorCode.UnknownObject, `object ${objId} was removed from this session: prompt without objId to track a new object`);
    }
    return objId;
  }

  private async detect(frame: number, text: string, threshold: number): Promise<{ entries: NativePromptEntry[]; features: ImageFeatures }> {
    const rgb = await this.source.frame(frame);
    const [features] = await this.model.encodeImages([{ rgb: rgb.rgb, width: rgb.width, height: rgb.height }], { keepBackbone: true });
    try {
      const seg = await this.model.segment(features!, { text }, { threshold });
      const entries = seg.masks.map((m) => ({ objId: this.objectIdFor(undefined), mask: decodeRle(m.counts, m.size[0], m.size[1]) }));
      return { entries, features: features! };
    } catch (err) {
      features!.dispose();
      throw err;
    }
  }

  private async withFrame(frame: number, call: (rgb: NativeFrame | null) => Promise<NativeStepResult>): Promise<NativeStepResult> {
    let res = await callNative(() => call(null));
    if (res.needFrame) {
      const f = await this.source.frame(frame);
      if (this.disposedFlag) throw new Sam3Error(ErrorCode.Disposed, 'the video session has been closed');
      res = await callNative(() => call({ data: f.rgb, width: f.width, height: f.height }));
    }
    this.memory = res.memoryBytes;
    this.last = Date.now();
    return res;
  }

  private objects(res: NativeStepResult): TrackedObject[] {
    const out: TrackedObject[] = [];
    for (let i = 0; i < res.objIds.length; i++) {
      const b = res.boxes;
      out.push({
        id: res.objIds[i]!,
        mask: { size: [res.height, res.width], counts: res.masks[i]! },
        box: [b[4 * i]!, b[4 * i + 1]!, b[4 * i + 2]!, b[4 * i + 3]!],
        score: res.scores[i]!,
        logit: res.logits[i]!,
      });
    }
    return out;
  }
}
