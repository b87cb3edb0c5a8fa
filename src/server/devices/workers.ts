/**
 * One worker per device in DEVICES: an engine (one native inference thread), the model loaded on
 * it, its encode batcher and its image-feature cache. Image features live on the device that
 * encoded them, so a request naming an image_id goes to the worker that holds it; new images go to
 * the least-loaded worker.
 */
import type { Logger } from 'pino';

import { type Engine, ErrorCode, type ImageFeatures, type RgbImage, Sam3Error, Sam3Model, createEngine, runtimeInfo } from '../../index.js';
import type { ServerConfig } from '../core/config.js';
import { threadsPerEngine } from '../core/config.js';
import { FeatureCache } from './feature-cache.js';
import { type BatchReport, EncodeBatcher } from './encode-batcher.js';

export interface WorkerHooks {
  onBatch?: (device: string, report: BatchReport) => void;
}

/** A reserved slot on a worker: held for the whole life of one image job. */
export interface Ticket {
  release(): void;
}

/** An image on its way to a worker's encoder (being decoded): the batcher waits for it. */
export interface PendingImage {
  submit(image: RgbImage): Promise<ImageFeatures>;
  /** The image will not come (its decode failed); a no-op once submitted. */
  cancel(): void;
}

export class Worker {
  readonly batcher: EncodeBatcher;
  readonly maxBatchSize: number;
  readonly cache: FeatureCache | undefined;
  private reserved = 0;
  private announced = 0;

  constructor(
    readonly index: number,
    readonly device: string,
    readonly engine: Engine,
    readonly model: Sam3Model,
    private readonly config: ServerConfig,
    hooks: WorkerHooks,
    now?: () => number,
  ) {
    // MAX_BATCH_SIZE, or the device's default (LoadOptions.encodeBatch: 8 on CUDA, 1 on a CPU, where
    // a batched pass is slower than its images one at a time).
    this.maxBatchSize = model.encodeBatch;
    this.batcher = new EncodeBatcher((images) => this.model.encodeImages(images), {
      maxBatchSize: this.maxBatchSize,
      batchWaitMs: config.batching.batchWaitMs,
      incoming: () => this.announced,
      onBatch: (r) => hooks.onBatch?.(this.label, r),
    });
    const fc = config.featureCache;
    this.cache = fc.enabled ? new FeatureCache({ maxEntries: fc.maxEntries, maxBytes: fc.maxBytes, ttlMs: fc.ttlMs, ...(now ? { now } : {}) }) : undefined;
  }

  /** Metric label: the device, made unique when the same device is listed twice (cpu,cpu). */
  get label(): string {
    return `${this.device}#${this.index}`;
  }

  /** Image jobs admitted and not finished (waiting to decode or encode, or running). */
  get load(): number {
    return this.reserved;
  }

  /** Reserves n slots, or undefined when the worker's queue is full. */
  admit(n = 1): Ticket | undefined {
    if (this.reserved + n > this.config.batching.maxQueue) return undefined;
    this.reserved += n;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.reserved -= n;
      },
    };
  }

  /**
   * Announces an image that will be submitted once decoded, so that jobs already queued wait for
   * it (within BATCH_WAIT_MS) and share its encoder pass; with nothing announced, a lone job on an
   * idle engine runs at once.
   */
  expectImage(): PendingImage {
    this.announced++;
    let open = true;
    const settle = () => {
      if (!open) return false;
      open = false;
      this.announced--;
      return true;
    };
    return {
      submit: (image) => {
        settle();
        return this.batcher.submit(image);
      },
      cancel: () => {
        if (settle()) this.batcher.poke();
      },
    };
  }

  dispose(): void {
    this.cache?.close();
    try {
      this.model.dispose();
    } finally {
      this.engine.close();
    }
  }
}

export class ModelPool {
  private constructor(
    readonly workers: Worker[],
    readonly bundleDir: string,
  ) {}

  /** Loads the bundle once per device, in order (loading is memory-heavy; one at a time). */
  static async load(bundleDir: string, config: ServerConfig, log: Logger, hooks: WorkerHooks, now?: () => number): Promise<ModelPool> {
    const devices = config.devices ?? [defaultDevice()];
    const threads = threadsPerEngine(config, devices);
    const workers: Worker[] = [];
    try {
      for (const [i, device] of devices.entries()) {
        const started = performance.now();
        log.info({ device, threads, bundle: bundleDir }, 'loading model');
        const engine = createEngine(device, threads);
        let model: Sam3Model;
        try {
          model = await Sam3Model.load(bundleDir, {
            engine,
            warmup: config.warmup,
            // Hash the files once, not once per device.
            verify: config.verifyBundle && i === 0,
            maxPixels: config.limits.maxImagePixels,
            textCacheEntries: config.textCacheEntries,
            concept: config.video.concept,
            ...(config.headBatch !== undefined ? { headBatch: config.headBatch } : {}),
            ...(config.batching.maxBatchSize !== undefined ? { encodeBatch: config.batching.maxBatchSize } : {}),
          });
        } catch (err) {
          engine.close();
          throw err;
        }
        workers.push(new Worker(i, device, engine, model, config, hooks, now));
        log.info({ device, ms: Math.round(performance.now() - started) }, 'model loaded');
      }
    } catch (err) {
      for (const w of workers) w.dispose();
      throw err;
    }
    const resolution = workers[0]!.model.manifest.resolution;
    if (config.resolution !== undefined && config.resolution !== resolution) {
      for (const w of workers) w.dispose();
      throw new Error(
        `IMAGE_MODEL_RESOLUTION=${config.resolution} but the bundle ${bundleDir} was exported at ${resolution}x${resolution} (TorchScript bakes the resolution in); unset IMAGE_MODEL_RESOLUTION or export a bundle at ${config.resolution}`,
      );
    }
    return new ModelPool(workers, bundleDir);
  }

  get model(): Sam3Model {
    return this.workers[0]!.model;
  }

  /** The least-loaded worker that can take n more jobs; 503 when every queue is full. */
  admitLeastLoaded(n: number, retryAfterSeconds: number): { worker: Worker; ticket: Ticket } {
    const order = [...this.workers].sort((a, b) => a.load - b.load || a.index - b.index);
    for (const worker of order) {
      const ticket = worker.admit(n);
      if (ticket) return { worker, ticket };
    }
    throw queueFull(retryAfterSeconds, n);
  }

  /** The worker whose feature cache holds this image id. */
  findCached(imageId: string): Worker | undefined {
    return this.workers.find((w) => w.cache?.has(imageId));
  }

  dispose(): void {
    for (const w of this.workers) {
      try {
        w.dispose();
      } catch {
        // keep freeing the others
      }
    }
  }
}

export function queueFull(retryAfterSeconds: number, n = 1): Sam3Error {
  return new Sam3Error(
    ErrorCode.QueueFull,
    `the server is at capacity (every device's queue of MAX_QUEUE_SIZE image jobs is full${n > 1 ? ` for ${n} more images` : ''}); retry after ${retryAfterSeconds} s`,
    { retry_after_seconds: retryAfterSeconds },
    { retryAfterSeconds },
  );
}

/** The first CUDA device when libtorch sees one, else the CPU. */
export function defaultDevice(): string {
  try {
    return runtimeInfo().cudaAvailable ? 'cuda:0' : 'cpu';
  } catch {
    return 'cpu';
  }
}
