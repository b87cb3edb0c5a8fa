/** The image API's paths in the OpenAPI document. */
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';

import { ApiCode } from '../core/errors.js';
import { errorResponses, json } from '../core/openapi.js';
import type { InteractiveSchemas } from './interactive-schemas.js';
import type { ImageSchemas } from './schemas.js';

const IMAGE_ID = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

const errors = errorResponses({
  400: 'Invalid input (bad JSON, JSON nested over 64 levels or with __proto__ keys, a body not matching its Content-Encoding, base64, image bytes, prompts, boxes, threshold or unknown fields); the message says what to change',
  404: {
    description: 'Unknown image_id (never embedded, expired or evicted), or unknown mask_input handle (interactive)',
    example: {
      code: ApiCode.UnknownImageId,
      message: `image_id ${IMAGE_ID} is not in the feature cache (never embedded here, expired after FEATURE_CACHE_TTL_SECONDS = 600 s unused, evicted when the cache was full, or lost when the server restarted); send the image again, or embed it with POST /api/v1/image/embed`,
      details: { image_id: IMAGE_ID },
    },
  },
  409: {
    description: 'image_id used while ENABLE_FEATURE_CACHE=false',
    example: { code: ApiCode.FeatureCacheDisabled, message: 'image_id needs the feature cache, and this server runs with ENABLE_FEATURE_CACHE=false; send the image itself', details: { image_id: IMAGE_ID } },
  },
  413: {
    description: 'Body over MAX_BODY_MB, or image over MAX_IMAGE_PIXELS',
    example: { code: ApiCode.ImageTooLarge, message: 'the image is 10000x8000 = 80000000 pixels, above the limit of 40000000; send a smaller image', details: { width: 10000, height: 8000, max_pixels: 40000000 } },
  },
  415: 'Content-Type, charset or Content-Encoding not accepted (JSON as UTF-8, as identity, gzip, deflate or br), or an image format that is not decoded (SVG, PDF: send PNG, JPEG, WebP, GIF, TIFF or AVIF)',
  501: {
    description: 'The model bundle has no interactive decoder (an image-only sam3 checkpoint, or a bundle exported before format 8)',
    example: { code: ApiCode.InteractiveUnsupported, message: 'the loaded model bundle has no interactive decoder; export a sam3_video checkpoint (bundle format 8)' },
  },
  503: {
    description: 'Model loading, shutting down, or the device queues are full (see Retry-After)',
    example: { code: ApiCode.QueueFull, message: "the server is at capacity (every device's queue of MAX_QUEUE_SIZE image jobs is full); retry after 1 s" },
  },
});

export function registerImagePaths(registry: OpenAPIRegistry, schemas: ImageSchemas, interactive: InteractiveSchemas): void {
  const imageErrors = errors(400, 404, 409, 413, 415, 421, 500, 503);

  registry.registerPath({
    method: 'post',
    path: '/api/v1/image/segment',
    operationId: 'segmentImage',
    tags: ['image'],
    summary: 'Segment an image with text prompts, box exemplars or both',
    description:
      'Each text prompt is its own query (box prompts are exemplars for every query); the image is encoded once, the queries go through the detector head HEAD_BATCH_SIZE at a time (8 on CUDA, 1 on CPU), and their masks are concatenated, each tagged with prompt_index. With box prompts only, one visual-exemplar query finds instances like the boxed ones.',
    request: {
      body: {
        required: true,
        content: { ...json(schemas.SegmentRequest), 'multipart/form-data': { schema: schemas.SegmentMultipart } },
      },
    },
    responses: { 200: { description: 'Masks (COCO RLE), normalised boxes and scores', content: json(schemas.SegmentResponse) }, ...imageErrors },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/image/cached-features',
    operationId: 'segmentCachedFeatures',
    tags: ['image'],
    summary: 'Several text prompts on one image, encoded once, all prompts in one batched pass',
    request: {
      body: {
        required: true,
        content: { ...json(schemas.CachedFeaturesRequest), 'multipart/form-data': { schema: schemas.CachedFeaturesMultipart } },
      },
    },
    responses: { 200: { description: 'One result per prompt, in order', content: json(schemas.CachedFeaturesResponse) }, ...imageErrors },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/image/embed',
    operationId: 'embedImage',
    tags: ['image'],
    summary: 'Encode an image once and keep its features; prompt it later by image_id',
    request: { body: { required: true, content: { ...json(schemas.EmbedRequest), 'multipart/form-data': { schema: schemas.EmbedMultipart } } } },
    responses: { 200: { description: 'The image_id to send instead of the image', content: json(schemas.EmbedResponse) }, ...errors(400, 409, 413, 415, 500, 503) },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/image/interactive',
    operationId: 'segmentInteractive',
    tags: ['image'],
    summary: 'Interactive segmentation: clicks and a box on one object (or several), refined call after call',
    description:
      "SAM 3's tracker path on a still image (transformers' Sam3TrackerModel): positive and negative clicks and/or a box give one object's mask, three candidates with their predicted IoU (multimask_output, the default) or one. Each response carries mask_input, a handle to its best mask's low-resolution logits: send it with the next click on the same object to refine it. The image's features are the ones the concept endpoints cache (same image_id; one ViT pass serves both); the first click on an image also runs the tracker's neck once and keeps its output with the cached features, so later clicks cost only the prompt encoder and mask decoder. Several objects (objects) run in batched passes. mask_input handles expire after going unused for FEATURE_CACHE_TTL_SECONDS (each use renews them) and are bounded in number and bytes (stale ones are a 404).",
    request: { body: { required: true, content: json(interactive.InteractiveRequest) } },
    responses: { 200: { description: "Masks (in mask_format), IoU scores, boxes and the next call's mask_input", content: json(interactive.InteractiveResponse) }, ...errors(400, 404, 409, 413, 415, 500, 501, 503) },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/image/batch',
    operationId: 'segmentBatch',
    tags: ['image'],
    summary: 'Several images with their prompts in one request; results in order',
    request: { body: { required: true, content: json(schemas.BatchRequest) } },
    responses: { 200: { description: 'One result per image, in order', content: json(schemas.BatchResponse) }, ...imageErrors },
  });
}
