/**
 * The OpenAPI 3.1 document, generated from the same zod schemas that validate requests
 * (@asteasolutions/zod-to-openapi reads zod v4's .meta()). Each slice registers its own paths;
 * this file holds the generator and the helpers they share.
 */
import { OpenAPIRegistry, OpenApiGeneratorV31, type ResponseConfig } from '@asteasolutions/zod-to-openapi';
import type { z } from 'zod';

import { ErrorResponseSchema } from './schemas.js';

export const json = (schema: z.ZodType) => ({ 'application/json': { schema } });

const COMMON: Record<number, string> = {
  421: 'The id names another replica (details.owner, header X-Sam3-Owner): send the request to that replica; a proxy configured as deploy/nginx does',
  500: 'A server fault; the body carries the request id that the log has',
};

/** A slice's error responses: `texts` say what each status means on its endpoints. */
export function errorResponses(texts: Record<number, string>): (...statuses: number[]) => Record<number, ResponseConfig> {
  return (...statuses) => Object.fromEntries(statuses.map((s) => [s, { description: texts[s] ?? COMMON[s] ?? 'Error', content: json(ErrorResponseSchema) }]));
}

export function buildOpenApi(register: ReadonlyArray<(registry: OpenAPIRegistry) => void>, info: { version: string; defaultThreshold: number }): Record<string, unknown> {
  const registry = new OpenAPIRegistry();
  for (const r of register) r(registry);
  const generator = new OpenApiGeneratorV31(registry.definitions);
  return generator.generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'SAM 3 inference server',
      version: info.version,
      description: `Segment Anything 3 over a native libtorch core. Masks are COCO RLE ({size: [h, w], counts}); boxes are normalised [x, y, width, height] (points [x, y]). Default confidence threshold ${info.defaultThreshold}.`,
    },
    tags: [
      { name: 'image', description: 'Image segmentation' },
      { name: 'video', description: 'Video sessions: prompt frames, track objects through the video (HTTP or WebSocket)' },
      { name: 'operations', description: 'Health, model information, metrics, documentation' },
    ],
  }) as unknown as Record<string, unknown>;
}
