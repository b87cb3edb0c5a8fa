/**
 * Video tracking sessions: prompts on frames, propagation forward / backward / both, over the
 * native tracker (native/core/tracker.cc, a C++ port of Sam3TrackerVideoModel's tracking loop). Frames are
 * decoded lazily from a FrameSource; the native side caches their vision features (bounded) and
 * asks for a frame's pixels only when it does not hold its features.
 */
import { ErrorCode, Sam3Error, callNative, invalid } from '../errors.js';
import type { NativeFrame, NativePromptEntry, NativeStepResult, NativeTracker, NativeVideoHandle } from '../native.js';
import { type Box, type Label, checkCount, checkFrameIndex, validateBox, validatePoint, validatePointLabel, validateThreshold } from '../prompts.js';
import type { RleMask } from '../rle.js';
import { type ConceptDetector, type ConceptSummary, SessionConcepts, conceptText, conceptTracked, logit } from './concepts.js';
import { type Direction, type PropagationRun, propagationRuns, releasedIfUnstarted } from './propagation.js';
import type { FrameSource, VideoInfo } from './source.js';

export type { Direction } from './propagation.js';

/**
 * What a session needs of the image model (Sam3Model): the detector for text concepts. A
 * structural type, so the session does not depend on the model's module.
 */
export interface FrameDetector extends ConceptDetector {
  readonly device: string;
}

export interface VideoPoint {
  /** Normalised [x, y] in [0, 1]. */
  point: [number, number];
  /** 1 or true: on the object, 0 or false: background. */
  label: Label;
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
  /** Box/point objects: the tracker's object score; concept objects: the detection score they were found with. */
  score: number;
  /** Box/point objects: the raw object-score logit; concept objects: the logit of the tracker's score on this frame. */
  logit: number;
  /** The text of the concept that found the object; null for objects of box/point prompts. */
  concept: string | null;
}

export interface FrameResult {
  frameIndex: number;
  objects: TrackedObject[];
}

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
  /** The session's text concepts and the objects each tracks now. */
  concepts: ConceptSummary[];
}

export interface VideoSessionOptions {
  /** Bytes of frame features kept on the device. Default 256 MiB. */
  featureCacheBytes?: number;
  /** Tracked frames kept per object around the current frame and prompts (minimum: the model's memory). */
  memoryWindow?: number;
}

const DEFAULT_FEATURE_CACHE = 256 * 1024 * 1024;

/**
 * One video being tracked. Operations (prompts, removals, resets) run one at a time in call order;
 * one propagation at a time, and none of them during it (ERR_SAM3_SESSION_BUSY): the session is
 * busy from the propagate() call until its iteration ends (a for-await loop ends it on break; call
 * return() on an iterator you do not finish).
 */
export class VideoSession {
  /** Set by dispose(): new calls are refused; queued operations still finish. */
  private closingFlag = false;
  private disposedFlag = false;
  private propagatingFlag = false;
  private chain: Promise<unknown> = Promise.resolve();
  private pendingOps = 0;
  private readonly objectIds: number[] = [];
  private readonly removed = new Set<number>();
  private readonly promptFrames = new Map<number, Set<number>>();
  private readonly tracked = new Set<number>();
  private readonly concepts: SessionConcepts;
  private promptCount = 0;
  private nextId = 1;
  private memory = 0;
  private last = Date.now();

  private constructor(
    private readonly detector: FrameDetector,
    private readonly tracker: NativeTracker,
    private readonly handle: NativeVideoHandle,
    readonly source: FrameSource,
  ) {
    this.concepts = new SessionConcepts(detector, tracker, handle);
  }

  /** @internal Sam3Model.openVideo is the public way in. */
  static async open(detector: FrameDetector, tracker: NativeTracker, source: FrameSource, options: VideoSessionOptions = {}): Promise<VideoSession> {
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
    return new VideoSession(detector, tracker, handle, source);
  }

  get info(): VideoInfo {
    return this.source.info;
  }

  get device(): string {
    return this.detector.device;
  }

  get disposed(): boolean {
    return this.closingFlag;
  }

  get propagating(): boolean {
    return this.propagatingFlag;
  }

  /** Operations queued or running, or a propagation. */
  get busy(): boolean {
    return this.pendingOps > 0 || this.propagatingFlag;
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
      concepts: this.concepts.list(this.objectIds),
    };
  }

  /** Adds a prompt on a frame and returns the masks of the objects it created or updated there. */
  addPrompt(prompt: VideoPrompt): Promise<PromptResult> {
    return this.exclusive('addPrompt', () => this.runPrompt(prompt));
  }

  /**
   * Tracks every object through the video, yielding each frame's result as soon as it is ready.
   * Checks and claims the session at the call (a second call throws ERR_SAM3_SESSION_BUSY at once);
   * operations queued before it finish first.
   */
  propagate(options: PropagateOptions = {}): AsyncGenerator<FrameResult> {
    this.ready('propagate');
    const concepts = this.concepts.size > 0;
    if (this.objectIds.length === 0 && !concepts) throw invalid('no objects to track: add a prompt first');
    const starts = [...this.promptFrames.values()].flatMap((s) => [...s]);
    const runs = propagationRuns(options, this.info.totalFrames, starts.length > 0 ? Math.min(...starts) : 0, concepts);
    this.propagatingFlag = true;
    const release = () => {
      this.propagatingFlag = false;
      this.last = Date.now();
    };
    const frames = concepts ? this.trackConcepts(runs, options.signal, release) : this.track(runs, options.signal, release);
    return releasedIfUnstarted(frames, release);
  }

  /**
   * Adds a text concept without running any frame (transformers' add_text_prompt): the next
   * propagation detects and tracks it from its first frame on. The same text again is the same
   * concept. `threshold` replaces the detection threshold for this concept.
   */
  addConcept(text: string, options: { threshold?: number } = {}): Promise<{ conceptId: number; text: string }> {
    return this.exclusive('addConcept', async () => {
      const t = conceptText(text);
      const concept = await this.concepts.add(t, options.threshold === undefined ? undefined : validateThreshold(options.threshold));
      return { conceptId: concept.id, text: t };
    });
  }

  /** Stops tracking a text concept and removes its objects; their ids. */
  removeConcept(conceptId: number): Promise<number[]> {
    return this.exclusive('removeConcept', async () => {
      const removed = await this.concepts.remove(conceptId);
      for (const id of removed) this.forget(id);
      return removed;
    });
  }

  removeObject(objId: number): Promise<void> {
    return this.exclusive('removeObject', async () => {
      if (!this.objectIds.includes(objId)) {
        throw new Sam3Error(ErrorCode.UnknownObject, `object ${objId} is not tracked in this session (tracked: ${this.objectIds.join(', ') || 'none'})`);
      }
      const res = await callNative(() => this.tracker.removeObject(this.handle, objId));
      this.forget(objId);
      this.memory = res.memoryBytes;
      this.last = Date.now();
    });
  }

  reset(): Promise<void> {
    return this.exclusive('reset', async () => {
      this.memory = await callNative(() => this.tracker.reset(this.handle));
      this.concepts.clear();
      this.objectIds.length = 0;
      this.promptFrames.clear();
      this.removed.clear();
      this.tracked.clear();
      this.promptCount = 0;
      this.nextId = 1;
      this.last = Date.now();
    });
  }

  /** Refuses new calls, stops a propagation at its next frame, lets queued operations finish, then frees everything. */
  async dispose(): Promise<void> {
    if (this.closingFlag) return;
    this.closingFlag = true;
    await this.chain.catch(() => undefined);
    this.disposedFlag = true;
    this.concepts.clear();
    this.handle.dispose();
    await this.source.close();
  }

  // ------------------------------------------------------------------------------------------

  /** The busy guard: refused when closed or propagating (checked at the call and again at its turn). */
  private ready(op: string): void {
    if (this.closingFlag) throw new Sam3Error(ErrorCode.Disposed, `${op}: the video session has been closed`);
    this.busyGuard(op);
    this.last = Date.now();
  }

  private busyGuard(op: string): void {
    if (this.propagatingFlag) {
      throw new Sam3Error(ErrorCode.SessionBusy, `${op}: the session is propagating; wait for it to finish (or cancel it) first`);
    }
  }

  /** Runs fn after the operations queued before it, so prompts, removals and resets never interleave. */
  private exclusive<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      this.ready(op);
    } catch (err) {
      return Promise.reject(err);
    }
    this.pendingOps++;
    const run = this.chain.then(() => {
      this.busyGuard(op); // a propagation may have been claimed while this waited
      return fn();
    });
    this.chain = run.catch(() => undefined).finally(() => this.pendingOps--);
    return run;
  }

  private async runPrompt(prompt: VideoPrompt): Promise<PromptResult> {
    const frame = checkFrameIndex(prompt?.frameIndex, this.info.totalFrames, 'frameIndex');
    const hasGeometry = prompt.box !== undefined || (prompt.points !== undefined && prompt.points.length > 0);
    let entries: NativePromptEntry[];
    if (prompt.text !== undefined) {
      if (hasGeometry) throw invalid('a text prompt cannot be combined with a box or points in one request: send them separately');
      if (prompt.objId !== undefined && prompt.objId !== null) throw invalid('a text prompt creates a new object for every detection, so it takes no obj_id (objId): leave it out, or null');
      const text = conceptText(prompt.text);
      const threshold = prompt.threshold === undefined ? undefined : validateThreshold(prompt.threshold);
      return this.promptConcept(frame, text, threshold);
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
        const [x, y, w, h] = validateBox(prompt.box, 'box', 'frame');
        coords.push(x, y, x + w, y + h);
        labels.push(2, 3);
      }
      for (const [i, p] of (prompt.points ?? []).entries()) {
        coords.push(...validatePoint(p?.point, `points[${i}].point`, 'frame'));
        labels.push(validatePointLabel(p.label, `points[${i}].label`));
      }
      entries = [{ objId: id, points: Float64Array.from(coords), labels: Int32Array.from(labels) }];
    }
    const res = await this.withFrame(frame, (rgb) => this.tracker.prompt(this.handle, frame, entries, rgb));
    for (const e of entries) {
      if (!this.objectIds.includes(e.objId)) this.objectIds.push(e.objId);
      this.promptedOn(e.objId, frame);
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

  /**
   * A text prompt: the concept is added (the same text again is the same concept) and the frame is
   * detected and tracked with every concept, as Sam3VideoModel's forward on one frame; the result
   * holds the concept's objects on the frame.
   */
  private async promptConcept(frame: number, text: string, threshold: number | undefined): Promise<PromptResult> {
    await this.concepts.add(text, threshold);
    const res = await this.concepts.track(frame, false, await this.source.frame(frame), { mode: 'forward', first: false, last: false });
    this.afterConceptStep(res.tracked, res.memoryBytes);
    this.promptedOn(CONCEPT_KEY, frame);
    this.promptCount++;
    const out: PromptResult = { frameIndex: frame, objId: null, objIds: [], masks: [], boxes: [], scores: [], logits: [] };
    for (const o of this.concepts.objects(res.frames[0]!)) {
      if (o.concept !== text) continue;
      out.objIds.push(o.id);
      out.masks.push(o.mask);
      out.boxes.push(o.box);
      out.scores.push(o.score);
      out.logits.push(logit(o.score));
    }
    out.objId = out.objIds[0] ?? null;
    return out;
  }

  private async *track(runs: PropagationRun[], signal: AbortSignal | undefined, release: () => void): AsyncGenerator<FrameResult> {
    try {
      await this.chain; // operations queued before this propagation finish first
      const plan = runs.flatMap((r) => r.frames.map((f) => [f, r.reverse] as const));
      for (let i = 0; i < plan.length; i++) {
        if (signal?.aborted || this.closingFlag) return;
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
      release();
    }
  }

  /** A propagation with concepts: every frame detects and tracks every concept (Sam3VideoModel). */
  private async *trackConcepts(runs: PropagationRun[], signal: AbortSignal | undefined, release: () => void): AsyncGenerator<FrameResult> {
    try {
      await this.chain;
      for (const run of runs) {
        for (let i = 0; i < run.frames.length; i++) {
          if (signal?.aborted || this.closingFlag) return;
          const frame = run.frames[i]!;
          const rgb = await this.source.frame(frame);
          const next = run.frames[i + 1];
          const pending = this.concepts.track(frame, run.reverse, rgb, { mode: 'propagate', first: i === 0, last: i === run.frames.length - 1 });
          if (next !== undefined) this.source.frame(next).catch(() => undefined);
          const res = await pending;
          if (this.disposedFlag) return;
          this.afterConceptStep(res.tracked, res.memoryBytes);
          for (const f of res.frames) {
            this.tracked.add(f.frame);
            yield { frameIndex: f.frame, objects: this.concepts.objects(f).map((o) => conceptTracked(o)) };
          }
        }
      }
    } finally {
      release();
    }
  }

  /** After a concept step: the objects the tracker holds now (ids that left were removed by it). */
  private afterConceptStep(tracked: number[], memoryBytes: number): void {
    for (const id of this.objectIds) if (!tracked.includes(id)) this.forget(id);
    this.objectIds.length = 0;
    this.objectIds.push(...tracked);
    this.memory = memoryBytes;
    this.last = Date.now();
  }

  private promptedOn(key: number, frame: number): void {
    let frames = this.promptFrames.get(key);
    if (!frames) this.promptFrames.set(key, (frames = new Set()));
    frames.add(frame);
  }

  /** An object is gone (removed by the client, with its concept, or by hotstart): its id is not reused. */
  private forget(objId: number): void {
    const i = this.objectIds.indexOf(objId);
    if (i >= 0) this.objectIds.splice(i, 1);
    this.promptFrames.delete(objId);
    this.removed.add(objId);
  }

  private objectIdFor(objId: number | null | undefined): number {
    if (objId === undefined || objId === null) {
      while (this.objectIds.includes(this.nextId) || this.removed.has(this.nextId)) this.nextId++;
      return this.nextId++;
    }
    checkCount(objId, 'objId');
    if (this.removed.has(objId)) {
      throw new Sam3Error(ErrorCode.UnknownObject, `object ${objId} was removed from this session: prompt without objId to track a new object`);
    }
    return objId;
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
        concept: this.concepts.conceptOf(res.objIds[i]!),
      });
    }
    return out;
  }
}

/** promptFrames' key for frames prompted with text (object ids are >= 0). */
const CONCEPT_KEY = -1;
