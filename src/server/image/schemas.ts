/**
 * Request and response schemas of the image API (zod): the same objects validate requests at the
 * edge and generate the OpenAPI document (image/openapi.ts). Request objects are strict: an unknown
 * field is a 400 naming it. Shared primitives (boxes, thresholds, masks) are in core/schemas.ts.
 */
import { z } from 'zod';

import { MAX_PROMPT_CHARS } from '../../index.js';
import { BoxOutSchema, ErrorResponseSchema, ImageSizeSchema, MaskOutSchema, boxSchema, labelSchema, maskFormatSchema, promptTextSchema, thresholdSchema } from '../core/schemas.js';

export interface ImageSchemaLimits {
  maxPrompts: number;
  maxBatchImages: number;
  defaultThreshold: number;
}

export const ImageIdSchema = z
  .string({ error: 'image_id must be a string: the id returned by /api/v1/image/embed' })
  .regex(/^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)?[0-9a-f]{64}$/, { message: 'image_id must be the id returned by /api/v1/image/embed (or by a segment response): 64 hex characters, after the replica name and a dot when the server has a REPLICA_ID' })
  .meta({
    description: 'Id of image features cached on the server, from /api/v1/image/embed: the sha256 of the image bytes, after "<replica>." when the server runs as a replica (REPLICA_ID) and owns the features.',
    example: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  });

export const ImageFieldSchema = z.string({ error: 'image must be a string: the image file as base64 or a data URL' }).min(1, { message: 'image is empty; send the image file as base64 or a data URL' }).meta({
  description: 'The image file (PNG, JPEG, WebP, GIF, TIFF, AVIF) as base64, or as a data URL (data:image/png;base64,...).',
  example: 'iVBORw0KGgoAAAANSUhEUgAA...',
});

export const TextPromptSchema = z
  .strictObject({
    type: z.literal('text'),
    text: promptTextSchema(),
  })
  .meta({ id: 'TextPrompt', description: 'Find every instance of a concept named by a short noun phrase.', example: { type: 'text', text: 'person' } });

export const BoxPromptSchema = z
  .strictObject({
    type: z.literal('box'),
    box: boxSchema('image'),
    label: labelSchema('true / 1: an example of what to find; false / 0: a negative example.').default(true),
  })
  .meta({
    id: 'BoxPrompt',
    description: 'A visual exemplar: a box around one instance (label true) or around something to exclude (label false). Applies to every text prompt of the request; with no text prompt, finds instances like the boxed ones.',
    example: { type: 'box', box: [0.3, 0.4, 0.2, 0.3], label: true },
  });

export const PromptSchema = z
  .discriminatedUnion('type', [TextPromptSchema, BoxPromptSchema], { error: "each prompt needs type 'text' (with text) or 'box' (with box and optional label)" })
  .meta({ id: 'Prompt' });

const detections = {
  masks: z.array(MaskOutSchema),
  boxes: z.array(BoxOutSchema).meta({ description: 'Normalised [x, y, width, height] per mask' }),
  scores: z.array(z.number()).meta({ description: 'Confidence per mask, sorted descending within each prompt' }),
  num_masks: z.number().int().meta({ description: 'Number of masks (the length of masks, boxes and scores)' }),
};

const EXAMPLE_IMAGE_ID = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
/** One image's detections as the examples show them: two masks, found by prompts 0 and 1. */
const exampleDetections = {
  masks: [
    { size: [480, 640], counts: 'PPa03o>2N1O1N2M3L4...' },
    { size: [480, 640], counts: 'Xk`07S>4L3M2O1N101...' },
  ],
  boxes: [
    [0.31, 0.4, 0.18, 0.29],
    [0.62, 0.35, 0.2, 0.41],
  ],
  scores: [0.91, 0.78],
  num_masks: 2,
};
const exampleSegment = { ...exampleDetections, prompt_index: [0, 1], image_size: { width: 640, height: 480 }, image_id: EXAMPLE_IMAGE_ID, cache_hit: false };

export function makeImageSchemas(limits: ImageSchemaLimits) {
  const confidence = thresholdSchema('confidence_threshold').optional().meta({ description: `Keep detections scoring above this. Default ${limits.defaultThreshold} (IMAGE_MODEL_CONFIDENCE_THRESHOLD).`, example: 0.5 });
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
      mask_format: maskFormatSchema(),
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
    .meta({ id: 'SegmentResponse', example: { ...exampleSegment, inference_time_ms: 412.3 } });

  const SegmentMultipart = z
    .object({
      image: z.string().meta({ format: 'binary', description: 'The image file' }),
      prompts: z.string().meta({ description: 'The prompts array as JSON text', example: '[{"type": "text", "text": "person"}]' }),
      confidence_threshold: z.string().optional().meta({ example: '0.5' }),
      mask_format: z.enum(['rle', 'polygon', 'png']).optional(),
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
      mask_format: maskFormatSchema(),
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
      mask_format: z.enum(['rle', 'polygon', 'png']).optional(),
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
    .meta({
      id: 'CachedFeaturesResponse',
      example: {
        results: [
          { prompt: 'person', ...exampleDetections },
          { prompt: 'car', masks: [], boxes: [], scores: [], num_masks: 0 },
        ],
        cache_hit: true,
        image_id: EXAMPLE_IMAGE_ID,
        image_size: { width: 640, height: 480 },
        inference_time_ms: 95.1,
      },
    });

  const EmbedRequest = z.strictObject({ image: ImageFieldSchema }).meta({ id: 'EmbedRequest' });
  const EmbedMultipart = z.object({ image: z.string().meta({ format: 'binary' }) }).meta({ id: 'EmbedMultipart' });
  const EmbedResponse = z
    .object({
      image_id: ImageIdSchema,
      image_size: ImageSizeSchema,
      cache_hit: z.boolean(),
      expires_in_seconds: z.number().meta({ description: 'Seconds from this response until the image_id expires if unused (FEATURE_CACHE_TTL_SECONDS). Expiry slides: every request that uses the image_id, or sends the same image again, renews it for this long from the end of that request. Entries may be evicted sooner when the cache is full (least recently used first).' }),
      inference_time_ms: z.number(),
    })
    .meta({ id: 'EmbedResponse', example: { image_id: EXAMPLE_IMAGE_ID, image_size: { width: 640, height: 480 }, cache_hit: false, expires_in_seconds: 600, inference_time_ms: 388.6 } });

  const BatchItem = z
    .strictObject({
      image: ImageFieldSchema.optional(),
      image_id: ImageIdSchema.optional(),
      prompts,
      confidence_threshold: confidence,
    })
    .meta({ id: 'BatchItem', description: 'One image (exactly one of image and image_id) and its prompts, as in /api/v1/image/segment.' });

  const images = (items: z.ZodType) =>
    z
      .array(items, { error: 'images must be an array of {image | image_id, prompts, confidence_threshold?}' })
      .min(1, { message: 'images is empty' })
      .max(limits.maxBatchImages, { message: `more than ${limits.maxBatchImages} images (MAX_IMAGES_PER_BATCH); split the request` });
  const batchFields = { confidence_threshold: confidence, mask_format: maskFormatSchema() };

  const BatchRequest = z.strictObject({ images: images(BatchItem), ...batchFields }).meta({
    id: 'BatchRequest',
    description:
      'Several images with their prompts; new images are encoded together in batched encoder passes. Each image succeeds or fails on its own: a bad image (or bad prompts, or an unknown image_id) gives that item an error in results and the others their masks. The request as a whole fails (4xx) only when it is malformed itself: not JSON, an unknown top-level field, no images or too many, image_ids of several replicas.',
  });
  /** The request as validated first: its items are validated one by one (BatchItem), each failing alone. */
  const BatchEnvelope = z.strictObject({ images: images(z.unknown()), ...batchFields });

  const BatchItemResult = SegmentResponse.omit({ inference_time_ms: true }).meta({ id: 'BatchItemResult', description: "One image's masks, as /api/v1/image/segment answers them", example: exampleSegment });
  const BatchItemError = z
    .object({
      http_status: z.number().int().meta({ description: 'The HTTP status this image alone would have been answered with (e.g. 400, 404, 413, 503)' }),
      error: ErrorResponseSchema.shape.error,
    })
    .meta({
      id: 'BatchItemError',
      description: "One image's failure: the error body of /api/v1/image/segment (the same code, message and details; request_id is the batch's) and its HTTP status. Items with a 503 may be retried.",
    });

  const BatchResponse = z
    .object({
      results: z.array(z.union([BatchItemResult, BatchItemError])).meta({ description: 'One entry per image, in order: its masks, or {http_status, error} when that image failed' }),
      num_failed: z.number().int().meta({ description: 'How many entries of results are errors' }),
      inference_time_ms: z.number(),
    })
    .meta({
      id: 'BatchResponse',
      example: {
        results: [
          exampleSegment,
          {
            http_status: 400,
            error: {
              code: 'invalid_image',
              message: 'images[1]: the bytes are not a readable image: Input buffer contains unsupported image format; send a PNG, JPEG, WebP, GIF, TIFF or AVIF image',
              details: { index: 1 },
              request_id: '5f1c9d2e-8a3b-4c6d-9e0f-1a2b3c4d5e6f',
            },
          },
        ],
        num_failed: 1,
        inference_time_ms: 530.2,
      },
    });

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
    BatchEnvelope,
    BatchItem,
    BatchResponse,
  };
}

export type ImageSchemas = ReturnType<typeof makeImageSchemas>;
export type SegmentRequest = z.output<ImageSchemas['SegmentRequest']>;
export type CachedFeaturesRequest = z.output<ImageSchemas['CachedFeaturesRequest']>;
export type BatchRequest = z.output<ImageSchemas['BatchRequest']>;
export type PromptInput = z.output<typeof PromptSchema>;

