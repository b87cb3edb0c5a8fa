/** The operations endpoints' paths in the OpenAPI document. */
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';

import { errorResponses, json } from '../core/openapi.js';
import { HealthResponseSchema, LiveResponseSchema, ModelsInfoSchema, ReadyResponseSchema } from './schemas.js';

const errors = errorResponses({
  503: 'Model loading or shutting down (see Retry-After)',
});

/**
 * Served but left out of the document: Swagger UI's own static files (/docs/{file}), which are
 * part of the documentation page, not of the API a client calls.
 */
export const UNDOCUMENTED_ROUTES: readonly string[] = ['GET /docs/{file}'];

/** Operations anyone may call when API_KEYS is set (core/access.ts isPublicPath). */
const PUBLIC = { security: [] };

export function registerOpsPaths(registry: OpenAPIRegistry): void {
  registry.registerPath({
    method: 'get',
    path: '/health',
    operationId: 'getHealth',
    ...PUBLIC,
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
    operationId: 'getLiveness',
    tags: ['operations'],
    summary: 'Liveness: 200 while the process answers, also while the model loads or the server drains (a liveness probe)',
    responses: { 200: { description: 'Alive', content: json(LiveResponseSchema) } },
  });
  registry.registerPath({
    method: 'get',
    path: '/health/ready',
    operationId: 'getReadiness',
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
    operationId: 'getModelInfo',
    tags: ['operations'],
    summary: 'The loaded bundle (manifest), devices, resolution, dtype, cache and batching settings and statistics',
    responses: { 200: { description: 'Model information', content: json(ModelsInfoSchema) }, ...errors(503) },
  });
  registry.registerPath({
    method: 'get',
    path: '/metrics',
    operationId: 'getMetrics',
    tags: ['operations'],
    summary: 'Prometheus metrics (text exposition format)',
    responses: { 200: { description: 'Metrics', content: { 'text/plain': { schema: z.string() } } } },
  });
  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    operationId: 'getOpenApi',
    ...PUBLIC,
    tags: ['operations'],
    summary: 'This document',
    responses: { 200: { description: 'OpenAPI 3.1 document', content: { 'application/json': { schema: z.record(z.string(), z.unknown()) } } } },
  });
  registry.registerPath({
    method: 'get',
    path: '/docs',
    operationId: 'getDocs',
    ...PUBLIC,
    tags: ['operations'],
    summary: 'Swagger UI over /openapi.json',
    responses: { 200: { description: 'HTML page', content: { 'text/html': { schema: z.string() } } } },
  });
}
