/**
 * Request-level inference: get image features (from the cache, from an encode already running for
 * the same bytes, or by decoding and queueing the image for a batched encoder pass), then run all
 * prompts of the request in ONE segmentBatch call on the device that holds the features.
 */
import type { Logger } from 'pino';

import { ErrorCode, type ImageFeatures, type InteractivePrompt, type InteractiveSegmentation, type Lease, type Prompt, Sam3Error, type Segmentation, decodeImage } from '../../index.js';
import type { ServerConfig } from '../core/config.js';
import { type ModelPool, type Ticket, type Worker, queueFull } from '../devices/workers.js';
import type { ImageRef } from './image-input.js';
import type { DeviceMetrics } from '../devices/metrics.js';
import type { ReplicaIds } from '../core/replica.js';

/** Image features held by one request: release() unpins them and frees the queue slot. */
export interface HeldFeatures {
  worker: Worker;
  features: ImageFeatures;
  /** The image_id clients see: the cache key with this replica's prefix (null when the cache is off). */
  imageId: string | null;
  /** The feature cache's key (the sha256 of the image bytes; null when the cache is off). */
  cacheKey: string | null;
  cacheHit: boolean;
  release(): void;
}

export class InferenceService {
  /** Encodes in progress, by image id, so concurrent requests for the same bytes encode once. */
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(
    private readonly pool: ModelPool,
    private readonly config: ServerConfig,
    private readonly metrics: DeviceMetrics,
    private readonly replica: ReplicaIds,
  ) {}

  get cacheEnabled(): boolean {
    return this.config.featureCache.enabled;
  }

  /** `field`: where an image_id came from, for the 421 of another replica's id. */
  async acquire(ref: ImageRef, log: Logger, field = 'image_id'): Promise<HeldFeatures> {
    if (ref.kind === 'id') return this.fromCache(ref.imageId, field);
    if (this.cacheEnabled) {
      // A second request for the same bytes waits for the first one's encode rather than encoding twice.
      for (let attempt = 0; attempt < 2; attempt++) {
        const held = this.tryCache(ref.imageId);
        if (held) return held;
        const pending = this.inflight.get(ref.imageId);
        if (!pending) break;
        await pending;
      }
    }
    return this.encode(ref.bytes, ref.imageId, log);
  }

  /** Runs every prompt on the held features (HEAD_BATCH_SIZE prompts per head pass). */
  async segment(held: HeldFeatures, prompts: Prompt[], threshold: number): Promise<Segmentation[]> {
    const start = performance.now();
    const out = await held.worker.model.segmentBatch(held.features, prompts, { threshold });
    this.metrics.observeStage('head', held.worker.label, (performance.now() - start) / 1000);
    return out;
  }

  /**
   * Interactive segmentation of each prompt's object on the held features. The first call on an
   * image adds the tracker's features to the cache entry, so its bytes are counted again.
   */
  async interactive(held: HeldFeatures, prompts: InteractivePrompt[], multimask: boolean): Promise<InteractiveSegmentation[]> {
    const start = performance.now();
    try {
      return await held.worker.model.segmentInteractiveBatch(held.features, prompts, { multimask });
    } finally {
      this.metrics.observeStage('interactive', held.worker.label, (performance.now() - start) / 1000);
      if (held.imageId !== null) held.worker.cache?.refresh(held.imageId);
    }
  }

  private fromCache(clientId: string, field: string): HeldFeatures {
    // Another replica's id is refused before any lookup (421): its content hash may be cached here too.
    const imageId = this.replica.local(clientId, field);
    if (!this.cacheEnabled) {
      throw new Sam3Error(ErrorCode.FeatureCacheDisabled, 'image_id needs the feature cache, and this server runs with ENABLE_FEATURE_CACHE=false; send the image itself', { image_id: clientId });
    }
    const held = this.tryCache(imageId);
    if (held) return held;
    const ttl = this.config.featureCache.ttlMs / 1000;
    throw new Sam3Error(
      ErrorCode.UnknownImageId,
      `image_id ${clientId} is not in the feature cache (never embedded here, expired after FEATURE_CACHE_TTL_SECONDS = ${ttl} s unused, evicted when the cache was full, or lost when the server restarted); send the image again, or embed it with POST /api/v1/image/embed`,
      { image_id: clientId },
    );
  }

  private tryCache(imageId: string): HeldFeatures | undefined {
    const worker = this.pool.findCached(imageId);
    if (!worker?.cache) return undefined;
    const ticket = worker.admit();
    if (!ticket) {
      this.metrics.queueRejections.inc({ device: worker.label });
      throw queueFull(this.config.batching.retryAfterSeconds);
    }
    const lease = worker.cache.lease(imageId);
    if (!lease) {
      ticket.release(); // expired between has() and lease()
      return undefined;
    }
    return held(worker, lease, ticket, imageId, this.replica.mint(imageId), true);
  }

  private async encode(bytes: Buffer, imageId: string, log: Logger): Promise<HeldFeatures> {
    let admitted: { worker: Worker; ticket: Ticket };
    try {
      admitted = this.pool.admitLeastLoaded(1, this.config.batching.retryAfterSeconds);
    } catch (err) {
      for (const w of this.pool.workers) this.metrics.queueRejections.inc({ device: w.label });
      throw err;
    }
    const { worker, ticket } = admitted;
    const pending = worker.expectImage();
    worker.cache?.recordMiss();
    let settle: () => void = () => {};
    if (this.cacheEnabled) this.inflight.set(imageId, new Promise<void>((resolve) => (settle = resolve)));
    try {
      const t0 = performance.now();
      const image = await decodeImage(bytes, { maxPixels: this.config.limits.maxImagePixels });
      this.metrics.observeStage('decode', worker.label, (performance.now() - t0) / 1000);
      const features = await pending.submit({ rgb: image.data, width: image.width, height: image.height });
      log.debug({ device: worker.label, width: image.width, height: image.height, ms: +(performance.now() - t0).toFixed(1) }, 'image encoded');
      if (worker.cache) return held(worker, worker.cache.insert(imageId, features), ticket, imageId, this.replica.mint(imageId), false);
      const own: Lease<ImageFeatures> = { value: features, release: () => features.dispose() };
      return held(worker, own, ticket, null, null, false);
    } catch (err) {
      pending.cancel();
      ticket.release();
      throw err;
    } finally {
      if (this.cacheEnabled) {
        this.inflight.delete(imageId);
        settle();
      }
    }
  }
}

function held(worker: Worker, lease: Lease<ImageFeatures>, ticket: Ticket, cacheKey: string | null, imageId: string | null, cacheHit: boolean): HeldFeatures {
  let released = false;
  return {
    worker,
    features: lease.value,
    imageId,
    cacheKey,
    cacheHit,
    release: () => {
      if (released) return;
      released = true;
      lease.release();
      ticket.release();
    },
  };
}
