/**
 * Metrics of the devices: encoder batches, inference stages, queue rejections, queue depths and the
 * image-feature and text caches, per device. Counters the library keeps itself (cache hits,
 * evictions, ...) are read at scrape time and added as deltas, so they stay true counters.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

import { LATENCY_BUCKETS } from '../core/metrics.js';
import type { BatchReport } from './encode-batcher.js';
import type { ModelPool } from './workers.js';

export type Stage = 'decode' | 'queue_wait' | 'encode' | 'head' | 'interactive';

export class DeviceMetrics {
  private pool: ModelPool | undefined;
  private readonly seen = new Map<string, number>();

  readonly batchSize: Histogram<'device'>;
  readonly stageSeconds: Histogram<'stage' | 'device'>;
  readonly queueRejections: Counter<'device'>;

  constructor(registry: Registry, options: { maxBatchSize: number }) {
    const registers = [registry];
    const sizes = [1, 2, 4, 8, 16, 32, 64, 128, 256].filter((b) => b < options.maxBatchSize);
    this.batchSize = new Histogram({
      name: 'sam3_encode_batch_size',
      help: 'Images per vision-encoder pass (dynamic batching)',
      labelNames: ['device'],
      buckets: [...sizes, options.maxBatchSize],
      registers,
    });
    this.stageSeconds = new Histogram({
      name: 'sam3_inference_stage_seconds',
      help: 'Time per inference stage: decode (image bytes to pixels), queue_wait (waiting for an encoder pass), encode (one batched encoder pass), head (text encoding + detector head + masks for all prompts of a request), interactive (tracker neck on first use + prompt encoder + mask decoder + masks, for all objects of an interactive request)',
      labelNames: ['stage', 'device'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.queueRejections = new Counter({
      name: 'sam3_queue_rejections_total',
      help: 'Image jobs refused with 503 because the device queue was full',
      labelNames: ['device'],
      registers,
    });

    const workers = () => this.pool?.workers ?? [];
    new Gauge({
      name: 'sam3_model_ready',
      help: '1 once the model is loaded on every device',
      registers,
      collect: function () {
        this.set(workers().length > 0 ? 1 : 0);
      },
    });
    new Gauge({
      name: 'sam3_encode_queue_depth',
      help: 'Encode jobs waiting for a vision-encoder pass, per device',
      labelNames: ['device'],
      registers,
      collect: function () {
        for (const w of workers()) this.set({ device: w.label }, w.batcher.depth);
      },
    });
    new Gauge({
      name: 'sam3_jobs_admitted',
      help: 'Image jobs admitted per device (decoding, waiting or running); bounded by MAX_QUEUE_SIZE',
      labelNames: ['device'],
      registers,
      collect: function () {
        for (const w of workers()) this.set({ device: w.label }, w.load);
      },
    });
    new Gauge({
      name: 'sam3_engine_native_queue',
      help: 'Jobs queued on the native engine thread, per device',
      labelNames: ['device'],
      registers,
      collect: function () {
        for (const w of workers()) {
          try {
            this.set({ device: w.label }, w.engine.stats().queued);
          } catch {
            // engine closed
          }
        }
      },
    });

    // A Prometheus counter mirroring a running total kept elsewhere (cache stats): each scrape adds
    // what the total grew by since the last one, per device.
    const mirroredCounter = (name: string, help: string, read: (w: ReturnType<typeof workers>[number]) => number | undefined) => {
      const seen = this.seen;
      new Counter({
        name,
        help,
        labelNames: ['device'],
        registers,
        collect: function () {
          for (const w of workers()) {
            const total = read(w);
            if (total === undefined) continue;
            const id = `${name}|${w.label}`;
            const delta = total - (seen.get(id) ?? 0);
            seen.set(id, total);
            this.inc({ device: w.label }, Math.max(0, delta));
          }
        },
      });
    };
    const cacheCounter = (name: string, help: string, key: 'hits' | 'misses' | 'evictions' | 'expirations') =>
      mirroredCounter(name, help, (w) => w.cache?.stats()[key]);
    cacheCounter('sam3_feature_cache_hits_total', 'Image-feature cache hits', 'hits');
    cacheCounter('sam3_feature_cache_misses_total', 'Image-feature cache misses', 'misses');
    cacheCounter('sam3_feature_cache_evictions_total', 'Image features evicted to stay within FEATURE_CACHE_MAX_MB / FEATURE_CACHE_MAX_ENTRIES', 'evictions');
    cacheCounter('sam3_feature_cache_expirations_total', 'Image features dropped after FEATURE_CACHE_TTL_SECONDS', 'expirations');
    new Gauge({
      name: 'sam3_feature_cache_bytes',
      help: 'Device memory held by cached image features',
      labelNames: ['device'],
      registers,
      collect: function () {
        for (const w of workers()) if (w.cache) this.set({ device: w.label }, w.cache.stats().bytes);
      },
    });
    new Gauge({
      name: 'sam3_feature_cache_entries',
      help: 'Images in the feature cache',
      labelNames: ['device'],
      registers,
      collect: function () {
        for (const w of workers()) if (w.cache) this.set({ device: w.label }, w.cache.stats().entries);
      },
    });
    const textCounter = (name: string, help: string, key: 'hits' | 'misses' | 'evictions') =>
      mirroredCounter(name, help, (w) => (w.model.disposed ? undefined : w.model.textCacheStats()[key]));
    textCounter('sam3_text_cache_hits_total', 'Text-embedding cache hits (per distinct prompt of a request)', 'hits');
    textCounter('sam3_text_cache_misses_total', 'Text-embedding cache misses (prompts sent through the text encoder)', 'misses');
    textCounter('sam3_text_cache_evictions_total', 'Text embeddings evicted (TEXT_CACHE_ENTRIES)', 'evictions');
  }

  attach(pool: ModelPool): void {
    this.pool = pool;
  }

  detach(): void {
    this.pool = undefined;
  }

  onBatch(device: string, report: BatchReport): void {
    this.batchSize.observe({ device }, report.size);
    this.stageSeconds.observe({ stage: 'encode', device }, report.seconds);
    for (const w of report.waits) this.stageSeconds.observe({ stage: 'queue_wait', device }, w);
  }

  observeStage(stage: Stage, device: string, seconds: number): void {
    this.stageSeconds.observe({ stage, device }, seconds);
  }

}
