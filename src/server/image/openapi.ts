/** The image API's paths in the OpenAPI document. */
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';

import { errorResponses, json } from '../core/openapi.js';
import type { ImageSchemas } from './schemas.js';

const errors = errorResponses({
  400: 'Invalid input (bad JSON, base64, image bytes, prompts, boxes, threshold or unknown fields); the message says what to change',
  404: 'Unknown image_id (never embedded, expired or evicted)',
  409: 'image_id used while ENABLE_FEATURE_CACHE=false',
  413: 'Body over MAX_BODY_MB, or image over MAX_IMAGE_PIXELS',
  415: 'Content-Type not accepted',
  503: 'Model loading, shutting down, or the device queues are full (see Retry-After)',
});

export function registerImagePaths(registry: OpenAPIRegistry, schemas: ImageSchemas): void {
  const imageErrors = errors(400, 404, 409, 413, 415, 421, 500, 503);

  registry.registerPath({
    method: 'post',
    path: '/api/v1/image/segment',
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
    tags: ['image'],
    summary: 'Encode an image once and keep its features; prompt it later by image_id',
    request: { body: { required: true, content: { ...json(schemas.EmbedRequest), 'multipart/form-data': { schema: schemas.EmbedMultipart } } } },
    responses: { 200: { description: 'The image_id to send instead of the image', content: json(schemas.EmbedResponse) }, ...errors(400, 409, 413, 415, 500, 503) },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/v1/image/batch',
    tags: ['image'],
    summary: 'Several images with their prompts in one request; results in order',
    request: { body: { required: true, content: json(schemas.BatchRequest) } },
    responses: { 200: { description: 'One result per image, in order', content: json(schemas.BatchResponse) }, ...imageErrors },
  });
}
