/**
 * Request and response schemas (zod). The same objects validate requests at the edge and generate
 * the OpenAPI document (openapi.ts), so the docs cannot drift from what the server accepts.
 * Request objects are strict: an unknown field is a 400 naming it, not silently ignored.
 */
import { z } from 'zod';

import { MAX_BOXES_PER_PROMPT, MAX_PROMPT_CHARS } from '../index.js';
import { makeVideoSchemas } from './video/schemas.js';

export interface SchemaLimits {
  maxPrompts: number;
  maxBatchImages: number;
  defaultThreshold: number;
}

/** Same tolerance as the library's validateBox: boxes computed in float32 may overshoot 1 slightly. */
const EPS = 1e-6;

export const ImageIdSchema = z
  .string({ error: 'image_id must be a string: the id returned by /api/v1/image/embed' })
  .regex(/^[0-9a-f]{64}$/, { message: 'image_id must be the 64 hex characters returned by /api/v1/image/embed (or by a segment response)' })
  .meta({ description: 'Id of image features cached on the server (sha256 of the image bytes), from /api/v1/image/embed.', example: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' });

export const ImageFieldSchema = z.string({ error: 'image must be a string: the image file as base64 or a data URL' }).min(1, { message: 'image is empty; send the image file as base64 or a data URL' }).meta({
  description: 'The image file (PNG, JPEG, WebP, GIF, TIFF, AVIF) as base64, or as a data URL (data:image/png;base64,...).',
  example: 'iVBORw0KGgoAAAANSUhEUgAA...',
});

export const BoxSchema = z
  .tuple([z.number(), z.number(), z.number(), z.number()], { error: 'box must be [x, y, width, height]: 4 numbers normalised to [0, 1]' })
  .superRefine(([x, y, w, h], ctx) => {
    if (w <= 0 || h <= 0) ctx.addIssue({ code: 'custom', message: `box has width ${w} and height ${h}; both must be > 0` });
    else if (x < 0 || y < 0 || x + w > 1 + EPS || y + h > 1 + EPS) {
      ctx.addIssue({ code: 'custom', message: `box [${x}, ${y}, ${w}, ${h}] is outside the image: boxes are normalised [x, y, width, height] with x, y >= 0 and x + width, y + height <= 1` });
    }
  })
  .meta({ id: 'Box', description: '[x, y, width, height], normalised to [0, 1] by the image width and height.', example: [0.3, 0.4, 0.2, 0.3] });

export const TextPromptSchema = z
  .strictObject({
    type: z.literal('text'),
    text: z
      .string()
      .trim()
      .min(1, { message: 'text is empty; give a noun phrase such as "person" or "red car"' })
      .max(MAX_PROMPT_CHARS, { message: `text is longer than ${MAX_PROMPT_CHARS} characters` }),
  })
  .meta({ id: 'TextPrompt', description: 'Find every instance of a concept named by a short noun phrase.', example: { type: 'text', text: 'person' } });

export const BoxPromptSchema = z
  .strictObject({
    type: z.literal('box'),
    box: BoxSchema,
    label: z.boolean({ error: 'label must be true (an example of what to find) or false (a negative example)' }).default(true),
  })
  .meta({
    id: 'BoxPrompt',
    description: 'A visual exemplar: a box around one instance (label true) or around something to exclude (label false). Applies to every text prompt of the request; with no text prompt, finds instances like the boxed ones.',
    example: { type: 'box', box: [0.3, 0.4, 0.2, 0.3], label: true },
  });

export const PromptSchema = z
  .discriminatedUnion('type', [TextPromptSchema, BoxPromptSchema], { error: "each prompt needs type 'text' (with text) or 'box' (with box and optional label)" })
  .meta({ id: 'Prompt' });

const threshold = z
  .number({ error: 'confidence_threshold must be a number within [0, 1]' })
  .min(0, { message: 'confidence_threshold must be within [0, 1]' })
  .max(1, { message: 'confidence_threshold must be within [0, 1]' });

export const RleMaskSchema = z
  .object({
    size: z.tuple([z.number().int(), z.number().int()]).meta({ description: '[height, width] of the image' }),
    counts: z.string().meta({ description: "COCO compressed RLE string (pycocotools' mask.encode / mask.decode)" }),
  })
  .meta({ id: 'RleMask', description: 'A binary mask at the original image size in COCO RLE; decode with pycocotools.mask.decode.', example: { size: [480, 640], counts: 'PPa03o>2N1O1N2M3L4...' } });

export const ImageSizeSchema = z.object({ width: z.number().int(), height: z.number().int() }).meta({ id: 'ImageSize', example: { width: 1024, height: 768 } });

const detections = {
  masks: z.array(RleMaskSchema),
  boxes: z.array(z.tuple([z.number(), z.number(), z.number(), z.number()])).meta({ description: 'Normalised [x, y, width, height] per mask' }),
  scores: z.array(z.number()).meta({ description: 'Confidence per mask, sorted descending within each prompt' }),
  num_masks: z.number().int(),
};

export const ErrorResponseSchema = z
  .object({
    error: z.object({
      code: z.string().meta({ example: 'validation_error' }),
      message: z.string().meta({ example: 'prompts[0].box: box has width 0 and height 0.3; both must be > 0' }),
      details: z.record(z.string(), z.unknown()),
      request_id: z.string().meta({ description: 'Also in the X-Request-Id header and the server log' }),
    }),
  })
  .meta({ id: 'ErrorResponse' });

export function makeSchemas(limits: SchemaLimits) {
  const confidence = threshold.optional().meta({ description: `Keep detections scoring above this. Default ${limits.defaultThreshold} (IMAGE_MODEL_CONFIDENCE_THRESHOLD).`, example: 0.5 });
  const prompts = z
    .array(PromptSchema, { error: 'prompts must be an array of {type: "text", text} and {type: "box", box, label} objects' })
    .min(1, { message: 'prompts is empty; give at least one text or box prompt' })
    .max(limits.maxPrompts, { message: `more than ${limits.maxPrompts} prompts (MAX_PROMPTS_PER_REQUEST); split the request` });

  const SegmentRequest = z
    .strictObject({
      image: ImageFieldSchema.optional(),
      image_id: ImageIdSchema.optional(),
      prompts,
      confidence_threshold: confidence,
    })
    .meta({
      id: 'SegmentRequest',
      description: 'Exactly one of image and image_id. Each text prompt is its own query (box prompts apply to each) and all run in one batched pass; with box prompts only, one visual-exemplar query.',
      example: { image: 'iVBORw0KGgoAAAANSUhEUgAA...', prompts: [{ type: 'text', text: 'person' }, { type: 'box', box: [0.3, 0.4, 0.2, 0.3], label: true }], confidence_threshold: 0.5 },
    });

  const SegmentResponse = z
    .object({
      ...detections,
      prompt_index: z.array(z.number().int()).meta({ description: 'Per mask: index in `prompts` of the text prompt that found it (box-only requests: the index of the first box prompt)' }),
      image_size: ImageSizeSchema,
      inference_time_ms: z.number(),
      image_id: ImageIdSchema.nullable().meta({ description: 'Id to prompt this image again without resending it; null when the feature cache is off' }),
      cache_hit: z.boolean().meta({ description: 'The image features came from the feature cache' }),
    })
    .meta({ id: 'SegmentResponse' });

  const SegmentMultipart = z
    .object({
      image: z.string().meta({ format: 'binary', description: 'The image file' }),
      prompts: z.string().meta({ description: 'The prompts array as JSON text', example: '[{"type": "text", "text": "person"}]' }),
      confidence_threshold: z.string().optional().meta({ example: '0.5' }),
    })
    .meta({ id: 'SegmentMultipart' });

  const CachedFeaturesRequest = z
    .strictObject({
      image: ImageFieldSchema.optional(),
      image_id: ImageIdSchema.optional(),
      text_prompts: z
        .array(z.string().trim().min(1, { message: 'a text prompt is empty' }).max(MAX_PROMPT_CHARS, { message: `a text prompt is longer than ${MAX_PROMPT_CHARS} characters` }), {
          error: 'text_prompts must be an array of strings',
        })
        .min(1, { message: 'text_prompts is empty; give at least one prompt' })
        .max(limits.maxPrompts, { message: `more than ${limits.maxPrompts} text_prompts (MAX_PROMPTS_PER_REQUEST); split the request` }),
      confidence_threshold: confidence,
    })
    .meta({
      id: 'CachedFeaturesRequest',
      description: 'Exactly one of image and image_id. The image is encoded once (or taken from the feature cache) and all prompts run in one batched pass.',
      example: { image: 'iVBORw0KGgoAAAANSUhEUgAA...', text_prompts: ['person', 'car', 'bicycle', 'dog'], confidence_threshold: 0.5 },
    });

  const CachedFeaturesMultipart = z
    .object({
      image: z.string().meta({ format: 'binary' }),
      text_prompts: z.string().meta({ description: 'A JSON array of strings, or one prompt per repeated field', example: '["person", "car"]' }),
      confidence_threshold: z.string().optional(),
    })
    .meta({ id: 'CachedFeaturesMultipart' });

  const CachedFeaturesResponse = z
    .object({
      results: z.array(z.object({ prompt: z.string(), ...detections })),
      cache_hit: z.boolean(),
      image_id: ImageIdSchema.nullable(),
      image_size: ImageSizeSchema,
      inference_time_ms: z.number(),
    })
    .meta({ id: 'CachedFeaturesResponse' });

  const EmbedRequest = z.strictObject({ image: ImageFieldSchema }).meta({ id: 'EmbedRequest' });
  const EmbedMultipart = z.object({ image: z.string().meta({ format: 'binary' }) }).meta({ id: 'EmbedMultipart' });
  const EmbedResponse = z
    .object({
      image_id: ImageIdSchema,
      image_size: ImageSizeSchema,
      cache_hit: z.boolean(),
      expires_in_seconds: z.number().meta({ description: 'FEATURE_CACHE_TTL_SECONDS; each use refreshes recency but not the expiry. Entries may be evicted sooner when the cache is full.' }),
      inference_time_ms: z.number(),
    })
    .meta({ id: 'EmbedResponse' });

  const BatchItem = z
    .strictObject({
      image: ImageFieldSchema.optional(),
      image_id: ImageIdSchema.optional(),
      prompts,
      confidence_threshold: confidence,
    })
    .meta({ id: 'BatchItem', description: 'One image (exactly one of image and image_id) and its prompts, as in /api/v1/image/segment.' });

  const BatchRequest = z
    .strictObject({
      images: z
        .array(BatchItem, { error: 'images must be an array of {image | image_id, prompts, confidence_threshold?}' })
        .min(1, { message: 'images is empty' })
        .max(limits.maxBatchImages, { message: `more than ${limits.maxBatchImages} images (MAX_IMAGES_PER_BATCH); split the request` }),
      confidence_threshold: confidence,
    })
    .meta({ id: 'BatchRequest', description: 'Several images with their prompts; new images are encoded together in batched encoder passes. All or nothing: a bad item fails the request with its index.' });

  const BatchResponse = z
    .object({
      results: z.array(SegmentResponse.omit({ inference_time_ms: true })),
      inference_time_ms: z.number(),
    })
    .meta({ id: 'BatchResponse' });

  return {
    SegmentRequest,
    SegmentResponse,
    SegmentMultipart,
    CachedFeaturesRequest,
    CachedFeaturesResponse,
    CachedFeaturesMultipart,
    EmbedRequest,
    EmbedResponse,
    EmbedMultipart,
    BatchRequest,
    BatchResponse,
    ...makeVideoSchemas({ maxPrompts: limits.maxPrompts, defaultThreshold: limits.defaultThreshold }),
  };
}

export type Schemas = ReturnType<typeof makeSchemas>;
export type SegmentRequest = z.output<Schemas['SegmentRequest']>;
export type CachedFeaturesRequest = z.output<Schemas['CachedFeaturesRequest']>;
export type BatchRequest = z.output<Schemas['BatchRequest']>;
export type PromptInput = z.output<typeof PromptSchema>;

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
