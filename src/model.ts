/**
 * Sam3Model: the image predictor. Load a bundle onto a device, encode an image once into an
 * ImageFeatures handle, then segment it with text prompts, box exemplars or both; several prompts
 * run in one batched head pass. Text embeddings are cached by prompt string.
 */
import os from 'node:os';

import { type Bundle, type BundleOptions, type ConceptConfig, type Manifest, openBundle } from './bundle.js';
import { detectorOptions, trackerOptions } from './bundle-pieces.js';
import { HandleCache, type Lease } from './cache.js';
import { Engine, createEngine, deviceBatchDefault } from './engine.js';
import { ErrorCode, Sam3Error, callNative, invalid } from './errors.js';
import { ImageFeatures } from './features.js';
import { type DecodeOptions, type ImageInput, imagePixels } from './image.js';
import { type InteractiveOptions, type InteractivePrompt, type InteractiveSegmentation, MaskLogits, interactiveObject } from './interactive.js';
import type { NativeModel, NativeQuery, NativeTextEmbedding, NativeTracker } from './native.js';
import { type Box, MAX_BOXES_PER_PROMPT, type Prompt, promptText, validateBox, validateBoxLabel, validateThreshold } from './prompts.js';
import type { RleMask } from './rle.js';
import { PromptTokenizer } from './tokenizer.js';
import type { FrameSource } from './video/source.js';
import { VideoSession, type VideoSessionOptions } from './video/session.js';

export interface Segmentation {
  masks: RleMask[];
  boxes: Box[];
  scores: number[];
  numMasks: number;
  imageSize: { width: number; height: number };
}

export interface SegmentOptions {
  /** Keep detections whose score (sigmoid(logit) * sigmoid(presence)) is above this. Default 0.5. */
  threshold?: number;
}

export interface LoadOptions extends BundleOptions, DecodeOptions {
  /** 'cpu', 'cuda' or 'cuda:N'. Default: the device the bundle was exported for. */
  device?: string;
  /** Threads for libtorch on this device's engine. Default: all cores. */
  threads?: number;
  /** Run each model piece once at load so the first request is not slow. Default true. */
  warmup?: boolean;
  /** Text embeddings kept in the cache. Default 1024. */
  textCacheEntries?: number;
  /**
   * Prompts that segmentBatch runs together in one head pass. Default 8 on CUDA, where one prompt
   * leaves the device idle, and 1 on a CPU, where a batched pass does the same work on B times
   * larger intermediates (at facebook/sam3's size 8 prompts took 41 s in one pass against 35.5 s
   * one by one).
   */
  headBatch?: number;
  /**
   * Images that encodeImages runs together in one vision-encoder pass (more go in several passes).
   * Default 8 on CUDA and 1 on a CPU, where one image already keeps every core busy and a batched
   * pass is slower than the same images one at a time (bench model, 2 threads: 4 images in one pass
   * 3.7-4.8 s, one by one 3.4-3.7 s).
   */
  encodeBatch?: number;
  /**
   * Prompts on one image that found something (and so ran the pixel decoder) before the image's
   * share of the pixel decoder is computed once and kept with its features, after which each such
   * prompt costs ~35% less pixel decoding on a CPU (bundle format 6: pixel_skip, pixel_split).
   * Default 2: a one- or two-prompt image never pays for it. 0: from the first; Infinity: never.
   */
  pixelSkipAfter?: number;
  /** Use an existing engine (one thread per device, shared by models) instead of making one. */
  engine?: Engine;
  /** Load the bundle's video tracker when it has one. Default true. */
  video?: boolean;
  /** Concept-tracking settings that replace the bundle's (manifest video.concept), by their Sam3VideoConfig names. */
  concept?: Partial<ConceptConfig>;
}

interface NormalisedPrompt {
  text: string;
  boxes: Float64Array | undefined;
  labels: Uint8Array | undefined;
}

export class Sam3Model {
  private readonly textCache: HandleCache<NativeTextEmbedding>;
  private readonly inflightTexts = new Map<string, Promise<void>>();
  private disposedFlag = false;

  private constructor(
    readonly bundle: Bundle,
    private readonly native: NativeModel,
    private readonly engine: Engine,
    private readonly ownsEngine: boolean,
    private readonly tokenizer: PromptTokenizer,
    private readonly decodeOptions: DecodeOptions,
    textCacheEntries: number,
    private tracker: NativeTracker | undefined,
    private readonly headBatch: number,
    /** Images per vision-encoder pass (LoadOptions.encodeBatch). */
    readonly encodeBatch: number,
    private readonly conceptOverrides: Partial<ConceptConfig>,
  ) {
    this.textCache = new HandleCache<NativeTextEmbedding>({ maxEntries: textCacheEntries });
  }

  static async load(bundleDir: string, options: LoadOptions = {}): Promise<Sam3Model> {
    const bundle = await openBundle(bundleDir, options);
    const m = bundle.manifest;
    const tokenizer = PromptTokenizer.load(bundle.file('tokenizer'), m.text.max_length, m.text.pad_token_id);
    for (const key of ['headBatch', 'encodeBatch'] as const) {
      const v = options[key];
      if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw invalid(`${key} must be a positive integer, got ${String(v)}`);
    }
    const psa = options.pixelSkipAfter;
    if (psa !== undefined && !(psa === Infinity || (Number.isInteger(psa) && psa >= 0))) {
      throw invalid(`pixelSkipAfter must be an integer >= 0 or Infinity, got ${String(psa)}`);
    }
    if (options.engine !== undefined && !(options.engine instanceof Engine)) throw invalid('engine must be an Engine from createEngine()');
    const ownsEngine = options.engine === undefined;
    const engine = options.engine ?? createEngine(options.device ?? m.device, options.threads ?? os.availableParallelism());
    try {
      const pixelSkipAfter = psa === undefined ? 2 : psa === Infinity ? -1 : psa;
      const native = await callNative(() => engine.native.loadModel(detectorOptions(bundle, { pixelSkipAfter, warmup: options.warmup ?? true })));
      let tracker: NativeTracker | undefined;
      const trackerLoad = options.video !== false ? trackerOptions(bundle, native) : undefined;
      if (trackerLoad) {
        try {
          tracker = await callNative(() => engine.native.loadTracker(trackerLoad));
        } catch (err) {
          native.dispose();
          throw err;
        }
      }
      const decode: DecodeOptions = {};
      if (options.maxPixels !== undefined) decode.maxPixels = options.maxPixels;
      if (options.minSide !== undefined) decode.minSide = options.minSide;
      const headBatch = options.headBatch ?? deviceBatchDefault(engine.device);
      const encodeBatch = options.encodeBatch ?? deviceBatchDefault(engine.device);
      return new Sam3Model(bundle, native, engine, ownsEngine, tokenizer, decode, options.textCacheEntries ?? 1024, tracker, headBatch, encodeBatch, { ...options.concept });
    } catch (err) {
      if (ownsEngine) engine.close();
      throw err;
    }
  }

  get manifest(): Manifest {
    return this.bundle.manifest;
  }

  get device(): string {
    return this.engine.device;
  }

  get disposed(): boolean {
    return this.disposedFlag;
  }

  info() {
    this.live('info');
    const n = this.native.info();
    return {
      bundle: this.bundle.dir,
      source: this.manifest.source.checkpoint,
      device: n.device,
      dtype: this.manifest.dtype,
      resolution: n.resolution,
      maskSize: n.maskSize,
      textLength: this.manifest.text.max_length,
      numQueries: this.manifest.num_queries,
      loadMs: n.loadMs,
      warmupMs: n.warmupMs,
      engine: this.engine.stats(),
      textCache: this.textCache.stats(),
    };
  }

  /** Decodes (if needed) and encodes one image into reusable features kept on the device. */
  async encodeImage(input: ImageInput): Promise<ImageFeatures> {
    const [features] = await this.encodeImages([input]);
    return features!;
  }

  /**
   * Encodes several images, `encodeBatch` of them a vision-encoder pass (see LoadOptions); features
   * in input order. `keepBackbone` also keeps each image's ViT output with its features (more
   * memory: g*g*V values, 21 MB at facebook/sam3's size): interactive segmentation runs the
   * tracker's neck on it, and a video session hands it to the tracker, so that one ViT pass serves
   * both. Default: kept when the model supports interactive segmentation (supportsInteractive).
   */
  async encodeImages(inputs: readonly ImageInput[], options: { keepBackbone?: boolean } = {}): Promise<ImageFeatures[]> {
    this.live('encodeImages');
    if (!Array.isArray(inputs) || inputs.length === 0) throw invalid('encodeImages needs a non-empty array of images');
    const decoded = await Promise.all(inputs.map((input) => imagePixels(input, this.decodeOptions)));
    const out: ImageFeatures[] = [];
    try {
      for (let start = 0; start < decoded.length; start += this.encodeBatch) {
        this.live('encodeImages');
        const pass = decoded.slice(start, start + this.encodeBatch);
        const keepBackbone = options.keepBackbone ?? this.supportsInteractive;
        const res = await callNative(() => this.native.encodeImages(pass, { keepBackbone }));
        out.push(...res.features.map((f) => new ImageFeatures(f, this)));
      }
    } catch (err) {
      // A later pass failed (or the model was disposed meanwhile): free what the earlier ones made.
      for (const f of out) f.dispose();
      throw err;
    }
    return out;
  }

  /** Segments with one prompt (text, box exemplars, or both). */
  async segment(features: ImageFeatures, prompt: Prompt, options: SegmentOptions = {}): Promise<Segmentation> {
    const [result] = await this.segmentBatch(features, [prompt], options);
    return result!;
  }

  /**
   * Runs several prompts on one image (the image is encoded once; prompts go through the head
   * `headBatch` at a time, see LoadOptions); results in prompt order.
   */
  async segmentBatch(features: ImageFeatures, prompts: readonly Prompt[], options: SegmentOptions = {}): Promise<Segmentation[]> {
    this.live('segment');
    this.checkFeatures(features, 'segment');
    const threshold = validateThreshold(options.threshold ?? 0.5);
    if (!Array.isArray(prompts) || prompts.length === 0) throw invalid('at least one prompt is required');
    const normalised = prompts.map((p, i) => this.normalisePrompt(p, `prompts[${i}]`));
    const leases = await this.leaseTexts(normalised.map((p) => p.text));
    try {
      const queries: NativeQuery[] = normalised.map((p) => {
        const q: NativeQuery = { text: leases.get(p.text)!.value };
        if (p.boxes) {
          q.boxes = p.boxes;
          q.labels = p.labels!;
        }
        return q;
      });
      const res = await callNative(() => this.native.segment(features.native, queries, threshold, { maxBatch: this.headBatch }));
      return res.queries.map((q) => {
        const n = q.scores.length;
        const boxes: Box[] = [];
        for (let i = 0; i < n; i++) boxes.push([q.boxes[i * 4]!, q.boxes[i * 4 + 1]!, q.boxes[i * 4 + 2]!, q.boxes[i * 4 + 3]!]);
        return {
          masks: q.masks.map((counts) => ({ size: [q.height, q.width] as [number, number], counts })),
          boxes,
          scores: Array.from(q.scores),
          numMasks: n,
          imageSize: { width: q.width, height: q.height },
        };
      });
    } finally {
      for (const lease of leases.values()) lease.release();
    }
  }

  /**
   * Interactive segmentation of one object (clicks, a box, the previous call's maskInput), as
   * transformers' Sam3TrackerModel does it on a single image: the tracker's prompt encoder and mask
   * decoder over the image's features (the first call on an image also runs the tracker's neck over
   * its ViT output and keeps the result with the features, `bytes` grows by it).
   */
  async segmentInteractive(features: ImageFeatures, prompt: InteractivePrompt): Promise<InteractiveSegmentation> {
    const options: InteractiveOptions = {};
    if (prompt && typeof prompt === 'object' && prompt.multimask !== undefined) options.multimask = prompt.multimask;
    const [result] = await this.segmentInteractiveBatch(features, [prompt], options);
    return result!;
  }

  /** Several objects on one image; prompts with the same number of points run in one batched pass. Results in prompt order. */
  async segmentInteractiveBatch(features: ImageFeatures, prompts: readonly InteractivePrompt[], options: InteractiveOptions = {}): Promise<InteractiveSegmentation[]> {
    this.live('segmentInteractive');
    const tracker = this.requireInteractive();
    this.checkFeatures(features, 'segmentInteractive');
    if (options.multimask !== undefined && typeof options.multimask !== 'boolean') throw invalid('multimask must be true or false');
    if (!Array.isArray(prompts) || prompts.length === 0) throw invalid('at least one interactive prompt is required');
    const objects = prompts.map((p, i) => interactiveObject(p, prompts.length === 1 ? 'prompt' : `prompts[${i}]`));
    const res = await callNative(() => tracker.interactive(features.native, objects, { multimask: options.multimask ?? true }));
    return res.objects.map((o) => {
      const boxes: Box[] = [];
      for (let i = 0; i < o.masks.length; i++) boxes.push([o.boxes[i * 4]!, o.boxes[i * 4 + 1]!, o.boxes[i * 4 + 2]!, o.boxes[i * 4 + 3]!]);
      return {
        masks: o.masks.map((counts) => ({ size: [res.height, res.width] as [number, number], counts })),
        iouScores: Array.from(o.iouScores),
        boxes,
        objectScore: 1 / (1 + Math.exp(-o.objectScoreLogit)),
        maskInput: new MaskLogits(o.maskInput),
        imageSize: { width: res.width, height: res.height },
      };
    });
  }

  /** Whether the bundle carries the tracker's interactive decoder (a sam3_video checkpoint, bundle format 8). */
  get supportsInteractive(): boolean {
    return this.tracker !== undefined;
  }

  /** Token ids the model sees for each prompt (for inspection and tests). */
  async tokenize(texts: readonly string[]) {
    return this.tokenizer.encode(texts);
  }

  textCacheStats() {
    return this.textCache.stats();
  }

  /** Whether the bundle carries the video tracker (exported from a sam3_video checkpoint). */
  get supportsVideo(): boolean {
    return this.tracker !== undefined;
  }

  /** The concept-tracking settings video sessions use: the bundle's, with LoadOptions.concept applied. */
  get conceptConfig(): ConceptConfig | undefined {
    const base = this.manifest.video?.concept;
    return base ? { ...base, ...this.conceptOverrides } : undefined;
  }

  /** @internal A text's embedding for a video concept, owned by the caller (not from the cache). */
  async encodeConceptText(text: string): Promise<NativeTextEmbedding> {
    this.live('encodeConceptText');
    const tokens = await this.tokenizer.encode([text]);
    const res = await callNative(() => this.native.encodeTexts(tokens.ids, tokens.mask, tokens.count));
    return res.embeddings[0]!;
  }

  /**
   * Opens a tracking session over a video on this model's engine (device). The session decodes
   * frames lazily from `source` and owns it: session.dispose() closes it.
   */
  async openVideo(source: FrameSource, options: VideoSessionOptions = {}): Promise<VideoSession> {
    this.live('openVideo');
    return VideoSession.open(this, this.requireTracker(), source, options);
  }

  /** The tracker, or ERR_SAM3_NO_VIDEO_MODEL for a bundle without one. */
  requireTracker(): NativeTracker {
    if (!this.tracker) {
      throw new Sam3Error(
        ErrorCode.NoVideoModel,
        `the model bundle ${this.bundle.dir} has no video tracker: export a sam3_video checkpoint (such as facebook/sam3) to track objects in videos`,
      );
    }
    return this.tracker;
  }

  /** Frees the weights and cached text embeddings; closes the engine if this model made it. */
  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    this.textCache.clear();
    this.tracker?.dispose();
    this.tracker = undefined;
    this.native.dispose();
    if (this.ownsEngine) this.engine.close();
  }

  /** `method`: the caller's name, for the message (segment and segmentBatch both say segment). */
  private checkFeatures(features: ImageFeatures, method: 'segment' | 'segmentInteractive'): void {
    if (!(features instanceof ImageFeatures)) throw invalid('features must be an ImageFeatures handle from encodeImage()');
    if (features.owner !== this) throw invalid('these image features were encoded by another model');
    if (features.disposed) throw new Sam3Error(ErrorCode.Disposed, `${method}: the image features have been disposed`);
  }

  /** The tracker, or ERR_SAM3_NO_INTERACTIVE_MODEL for a bundle without one. */
  private requireInteractive(): NativeTracker {
    if (!this.tracker) {
      throw new Sam3Error(
        ErrorCode.NoInteractiveModel,
        `the model bundle ${this.bundle.dir} has no interactive decoder (the tracker of a sam3_video checkpoint such as facebook/sam3, bundle format 8), or it was loaded with video: false; export a sam3_video checkpoint for clicks and boxes on images`,
      );
    }
    return this.tracker;
  }

  private live(op: string): void {
    if (this.disposedFlag) throw new Sam3Error(ErrorCode.Disposed, `${op}: the model has been disposed`);
  }

  private normalisePrompt(prompt: Prompt, where: string): NormalisedPrompt {
    if (!prompt || typeof prompt !== 'object') throw invalid(`${where} must be an object with text and/or boxes`);
    const { text, boxes } = prompt;
    const trimmed = promptText(text, `${where}.text`);
    if (boxes !== undefined && boxes !== null && !Array.isArray(boxes)) throw invalid(`${where}.boxes must be an array`);
    const list = boxes ?? [];
    if (trimmed === undefined && list.length === 0) {
      throw invalid(text === undefined || text === null ? `${where} needs a text or at least one box` : `${where}.text is empty; give a text or at least one box`);
    }
    if (list.length > MAX_BOXES_PER_PROMPT) throw invalid(`${where} has ${list.length} boxes; the limit is ${MAX_BOXES_PER_PROMPT}`);
    let boxArray: Float64Array | undefined;
    let labels: Uint8Array | undefined;
    if (list.length > 0) {
      boxArray = new Float64Array(list.length * 4);
      labels = new Uint8Array(list.length);
      list.forEach((b, i) => {
        if (!b || typeof b !== 'object') throw invalid(`${where}.boxes[${i}] must be {box: [x, y, w, h], label?: boolean}`);
        const box = validateBox(b.box, `${where}.boxes[${i}].box`);
        const positive = b.label === undefined ? true : validateBoxLabel(b.label, `${where}.boxes[${i}].label`);
        boxArray!.set(box, i * 4);
        labels![i] = positive ? 1 : 0;
      });
    }
    // Box exemplars without text use the model's "visual" prompt, as Sam3Processor does.
    return { text: trimmed ?? this.manifest.text.visual_prompt, boxes: boxArray, labels };
  }

  /** Text embeddings for the prompts, from the cache or encoded in one batch; pinned until released. */
  private async leaseTexts(texts: readonly string[]): Promise<Map<string, Lease<NativeTextEmbedding>>> {
    const leases = new Map<string, Lease<NativeTextEmbedding>>();
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const missing: string[] = [];
        const waiting: Promise<void>[] = [];
        for (const t of new Set(texts)) {
          if (leases.has(t)) continue;
          const lease = this.textCache.lease(t);
          if (lease) leases.set(t, lease);
          else if (this.inflightTexts.has(t)) waiting.push(this.inflightTexts.get(t)!);
          else missing.push(t);
        }
        if (missing.length > 0) {
          const job = this.encodeTexts(missing, leases);
          const done = job.then(
            () => undefined,
            () => undefined,
          );
          for (const t of missing) this.inflightTexts.set(t, done);
          try {
            await job;
          } finally {
            for (const t of missing) if (this.inflightTexts.get(t) === done) this.inflightTexts.delete(t);
          }
        }
        if (waiting.length === 0) break;
        await Promise.all(waiting);
      }
      for (const t of texts) if (!leases.has(t)) await this.encodeTexts([t], leases);
      return leases;
    } catch (err) {
      for (const lease of leases.values()) lease.release();
      throw err;
    }
  }

  private async encodeTexts(texts: string[], into: Map<string, Lease<NativeTextEmbedding>>): Promise<void> {
    const tokens = await this.tokenizer.encode(texts);
    this.live('segment');
    const res = await callNative(() => this.native.encodeTexts(tokens.ids, tokens.mask, tokens.count));
    res.embeddings.forEach((emb, i) => {
      const key = texts[i]!;
      if (this.disposedFlag) {
        emb.dispose();
        return;
      }
      into.set(key, this.textCache.insert(key, emb));
    });
  }
}
