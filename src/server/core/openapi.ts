/**
 * The OpenAPI 3.1 document, generated from the same zod schemas that validate requests
 * (@asteasolutions/zod-to-openapi reads zod v4's .meta()).
 */
import { OpenAPIRegistry, OpenApiGeneratorV31, type ResponseConfig } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

import type { ServerConfig } from './config.js';
import { ErrorResponseSchema, HealthResponseSchema, ModelsInfoSchema, type Schemas } from './schemas.js';
import { registerVideoPaths } from './video/openapi.js';

const json = (schema: z.ZodType) => ({ 'application/json': { schema } });

function errors(...statuses: number[]): Record<number, ResponseConfig> {
  const text: Record<number, string> = {
    400: 'Invalid input (bad JSON, base64, image bytes, prompts, boxes, threshold or unknown fields); the message says what to change',
    404: 'Unknown image_id (never embedded, expired or evicted)',
    409: 'image_id used while ENABLE_FEATURE_CACHE=false',
    413: 'Body over MAX_BODY_MB, or image over MAX_IMAGE_PIXELS',
    415: 'Content-Type not accepted',
    500: 'A server fault; the body carries the request id that the log has',
    503: 'Model loading, shutting down, or the device queues are full (see Retry-After)',
  };
  return Object.fromEntries(statuses.map((s) => [s, { description: text[s] ?? 'Error', content: json(ErrorResponseSchema) }]));
}

export function buildOpenApi(schemas: Schemas, config: ServerConfig, version: string): Record<string, unknown> {
  const registry = new OpenAPIRegistry();
  const imageErrors = errors(400, 404, 409, 413, 415, 500, 503);

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
  registerVideoPaths(registry, schemas);
  registry.registerPath({
    method: 'get',
    path: '/health',
    tags: ['operations'],
    summary: 'Liveness and readiness (503 while the model loads or the server shuts down)',
    responses: {
      200: { description: 'Ready', content: json(HealthResponseSchema) },
      503: { description: 'Loading, failed or shutting down', content: json(HealthResponseSchema) },
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/models/info',
    tags: ['operations'],
    summary: 'The loaded bundle (manifest), devices, resolution, dtype, cache and batching settings and statistics',
    responses: { 200: { description: 'Model information', content: json(ModelsInfoSchema) }, ...errors(503) },
  });
  registry.registerPath({
    method: 'get',
    path: '/metrics',
    tags: ['operations'],
    summary: 'Prometheus metrics (text exposition format)',
    responses: { 200: { description: 'Metrics', content: { 'text/plain': { schema: z.string() } } } },
  });
  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    tags: ['operations'],
    summary: 'This document',
    responses: { 200: { description: 'OpenAPI 3.1 document', content: { 'application/json': { schema: z.record(z.string(), z.unknown()) } } } },
  });
  registry.registerPath({
    method: 'get',
    path: '/docs',
    tags: ['operations'],
    summary: 'Swagger UI over /openapi.json',
    responses: { 200: { description: 'HTML page', content: { 'text/html': { schema: z.string() } } } },
  });
  registry.registerPath({
    method: 'get',
    path: '/docs/{file}',
    tags: ['operations'],
    summary: "Swagger UI's static files",
    request: { params: z.object({ file: z.string().meta({ param: { name: 'file', in: 'path' }, example: 'swagger-ui.css' }) }) },
    responses: { 200: { description: 'A static file' }, ...errors(404) },
  });

  const generator = new OpenApiGeneratorV31(registry.definitions);
  return generator.generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'SAM 3 inference server',
      version,
      description: `Segment Anything 3 over a native libtorch core. Masks are COCO RLE ({size: [h, w], counts}); boxes are normalised [x, y, width, height] (points [x, y]). Default confidence threshold ${config.confidenceThreshold}.`,
    },
    tags: [
      { name: 'image', description: 'Image segmentation' },
      { name: 'video', description: 'Video sessions: prompt frames, track objects through the video (HTTP or WebSocket)' },
      { name: 'operations', description: 'Health, model information, metrics, documentation' },
    ],
  }) as unknown as Record<string, unknown>;
}
