/** The operations endpoints' paths in the OpenAPI document. */
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

import { errorResponses, json } from '../core/openapi.js';
import { HealthResponseSchema, LiveResponseSchema, ModelsInfoSchema, ReadyResponseSchema } from './schemas.js';

const errors = errorResponses({
  404: 'No such file',
  503: 'Model loading or shutting down (see Retry-After)',
});

export function registerOpsPaths(registry: OpenAPIRegistry): void {
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
    path: '/health/live',
    tags: ['operations'],
    summary: 'Liveness: 200 while the process answers, also while the model loads or the server drains (a liveness probe)',
    responses: { 200: { description: 'Alive', content: json(LiveResponseSchema) } },
  });
  registry.registerPath({
    method: 'get',
    path: '/health/ready',
    tags: ['operations'],
    summary: 'Readiness: 200 once the model is loaded; 503 while loading, after a failed load, and from the moment shutdown begins (a readiness probe)',
    responses: {
      200: { description: 'Ready for new work', content: json(ReadyResponseSchema) },
      503: { description: 'Loading, failed or shutting down (see Retry-After)', content: json(ReadyResponseSchema) },
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

}
