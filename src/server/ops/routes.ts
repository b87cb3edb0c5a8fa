/**
 * Operations endpoints: /health (the spec's: 503 until the model is loaded and once shutdown
 * begins), /health/live (the process answers), /health/ready (it takes new work), /models/info,
 * /metrics.
 */
import Router from '@koa/router';

import { type CacheStats, runtimeInfo } from '../../index.js';
import type { AppContext, AppDeps, AppRouter, AppState } from '../core/context.js';

function gpus(): { gpu_available: boolean; gpu_count: number } {
  try {
    const info = runtimeInfo();
    return { gpu_available: info.cudaAvailable, gpu_count: info.cudaDeviceCount };
  } catch {
    return { gpu_available: false, gpu_count: 0 };
  }
}

function sumStats(list: CacheStats[]): CacheStats {
  const total: CacheStats = { entries: 0, bytes: 0, hits: 0, misses: 0, evictions: 0, expirations: 0 };
  for (const s of list) for (const k of Object.keys(total) as (keyof CacheStats)[]) total[k] += s[k];
  return total;
}

export function healthRoutes(deps: AppDeps): AppRouter {
  const router: AppRouter = new Router<AppState, AppContext>();
  const { config } = deps;

  // Liveness: the event loop answers. Never 503 while loading (a restart would not help) or draining.
  router.get('/health/live', (ctx) => {
    ctx.body = { status: 'alive', uptime_seconds: Math.round((Date.now() - deps.startedAt) / 100) / 10 };
  });

  // Readiness: the model is loaded and shutdown has not begun; it flips to 503 first on SIGTERM.
  router.get('/health/ready', (ctx) => {
    const phase = deps.phase();
    const status = deps.draining() ? 'shutting_down' : phase === 'ready' ? 'ready' : phase === 'loading' ? 'loading' : 'failed';
    ctx.status = status === 'ready' ? 200 : 503;
    if (status !== 'ready') ctx.set('Retry-After', String(config.batching.retryAfterSeconds));
    ctx.body = { status };
  });

  router.get('/health', (ctx) => {
    const phase = deps.phase();
    const ready = phase === 'ready' && !deps.draining();
    const status = ready ? 'healthy' : deps.draining() ? 'shutting_down' : phase === 'loading' ? 'loading' : phase === 'failed' ? 'failed' : 'shutting_down';
    const devices = phase === 'ready' ? deps.pool().workers.map((w) => w.device) : (config.devices ?? []);
    const error = deps.loadError();
    ctx.status = ready ? 200 : 503;
    if (!ready) ctx.set('Retry-After', String(config.batching.retryAfterSeconds));
    ctx.body = {
      status,
      ...gpus(),
      active_sessions: deps.activeSessions(),
      model_loaded: phase === 'ready',
      devices,
      uptime_seconds: Math.round((Date.now() - deps.startedAt) / 100) / 10,
      ...(phase === 'failed' && error ? { error: error.message } : {}),
    };
  });

  router.get('/models/info', (ctx) => {
    const pool = deps.pool();
    const model = pool.model;
    const m = model.manifest;
    const fc = config.featureCache;
    ctx.body = {
      image_model: {
        checkpoint: config.checkpoint,
        bundle: pool.bundleDir,
        source: m.source.checkpoint,
        model_type: m.source.model_type,
        dtype: m.dtype,
        resolution: m.resolution,
        mask_size: m.mask_size,
        num_queries: m.num_queries,
        text_max_length: m.text.max_length,
        default_confidence_threshold: config.confidenceThreshold,
        devices: pool.workers.map((w) => {
          const info = w.model.info();
          return {
            device: w.device,
            label: w.label,
            threads: info.engine.threads,
            load_ms: info.loadMs,
            warmup_ms: info.warmupMs,
            jobs_admitted: w.load,
            encode_queue: w.batcher.depth,
            max_batch_size: w.maxBatchSize,
            engine: info.engine,
          };
        }),
        manifest: m,
      },
      feature_cache: {
        enabled: fc.enabled,
        ttl_seconds: fc.ttlMs / 1000,
        max_bytes_per_device: fc.maxBytes,
        max_entries_per_device: fc.maxEntries,
        ...sumStats(pool.workers.flatMap((w) => (w.cache ? [w.cache.stats()] : []))),
      },
      text_cache: { max_entries_per_device: config.textCacheEntries, ...sumStats(pool.workers.map((w) => w.model.textCacheStats())) },
      batching: {
        // null: each device's default (8 on CUDA, 1 on a CPU), listed under image_model.devices.
        max_batch_size: config.batching.maxBatchSize ?? null,
        batch_wait_ms: config.batching.batchWaitMs,
        max_queue_size: config.batching.maxQueue,
      },
      video: {
        supported: model.supportsVideo,
        active_sessions: deps.activeSessions(),
        max_sessions: config.video.maxSessions,
        session_idle_timeout_seconds: config.video.idleTimeoutMs / 1000,
        frame_cache_bytes_per_session: config.video.frameCacheBytes,
        max_upload_bytes: config.video.maxUploadBytes,
        // Sam3VideoConfig's concept-tracking settings in force: the bundle's, with the environment's applied.
        concept: model.conceptConfig ?? null,
      },
      limits: {
        max_body_bytes: config.limits.maxBodyBytes,
        max_image_pixels: config.limits.maxImagePixels,
        max_prompts_per_request: config.limits.maxPrompts,
        max_images_per_batch: config.limits.maxBatchImages,
      },
    };
  });

  router.get('/metrics', async (ctx) => {
    const { contentType, body } = await deps.metrics.render();
    ctx.type = contentType;
    ctx.body = body;
  });

  return router;
}
