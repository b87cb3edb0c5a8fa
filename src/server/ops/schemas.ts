/** Schemas of the operations endpoints (/health, /models/info), for the OpenAPI document. */
import { z } from 'zod';

export const HealthResponseSchema = z
  .object({
    status: z.enum(['healthy', 'loading', 'shutting_down', 'failed']),
    gpu_available: z.boolean(),
    gpu_count: z.number().int(),
    active_sessions: z.number().int(),
    model_loaded: z.boolean(),
    devices: z.array(z.string()),
    uptime_seconds: z.number(),
    error: z.string().optional(),
  })
  .meta({ id: 'HealthResponse', example: { status: 'healthy', gpu_available: false, gpu_count: 0, active_sessions: 0, model_loaded: true, devices: ['cpu'], uptime_seconds: 12.3 } });

export const LiveResponseSchema = z
  .object({ status: z.literal('alive'), uptime_seconds: z.number() })
  .meta({ id: 'LiveResponse', example: { status: 'alive', uptime_seconds: 12.3 } });

export const ReadyResponseSchema = z
  .object({
    status: z.enum(['ready', 'loading', 'failed', 'shutting_down']).meta({ description: 'ready (200); loading, failed or shutting_down (503 with Retry-After)' }),
  })
  .meta({ id: 'ReadyResponse', example: { status: 'ready' } });

export const ModelsInfoSchema = z
  .object({
    image_model: z.looseObject({
      checkpoint: z.string(),
      bundle: z.string(),
      source: z.string(),
      dtype: z.string(),
      resolution: z.number().int(),
      mask_size: z.number().int(),
      devices: z.array(z.looseObject({ device: z.string(), max_batch_size: z.number().int().meta({ description: 'Images per vision-encoder pass on this device' }) })),
      manifest: z.record(z.string(), z.unknown()),
    }),
    feature_cache: z.looseObject({ enabled: z.boolean() }),
    batching: z.looseObject({ max_batch_size: z.number().int().nullable().meta({ description: 'MAX_BATCH_SIZE, or null when unset: each device then has its own (8 on CUDA, 1 on a CPU)' }), batch_wait_ms: z.number(), max_queue_size: z.number().int() }),
    video: z
      .looseObject({ supported: z.boolean().meta({ description: 'The bundle has the video tracker' }), active_sessions: z.number().int(), max_sessions: z.number().int() })
      .meta({ description: 'Video sessions: whether the bundle tracks video, and the session limits' }),
    limits: z.record(z.string(), z.number()),
  })
  .meta({ id: 'ModelsInfo' });
