/**
 * The OpenAPI 3.1 document, generated from the same zod schemas that validate requests
 * (@asteasolutions/zod-to-openapi reads zod v4's .meta()). Each slice registers its own paths;
 * this file holds the generator and the helpers they share.
 */
import { OpenAPIRegistry, OpenApiGeneratorV31, type ResponseConfig } from '@asteasolutions/zod-to-openapi';
import type { z } from 'zod';

import { ApiCode } from './errors.js';
import { ErrorResponseSchema } from './schemas.js';

export const json = (schema: z.ZodType) => ({ 'application/json': { schema } });

/** An error body as an example: what a client gets for one status. */
export interface ErrorExample {
  code: ApiCode;
  message: string;
  details?: Record<string, unknown>;
}

/** What a slice says about one error status: a description, or a description and its example. */
export type ErrorText = string | { description: string; example: ErrorExample };

const COMMON: Record<number, string> = {
  401: 'API_KEYS is set and the request carries no valid key (Authorization: Bearer <key> or X-API-Key: <key>)',
  421: 'The id names another replica (details.owner, header X-Sam3-Owner): send the request to that replica; a proxy configured as deploy/nginx does',
  500: 'A server fault; the body carries the request id that the log has',
};

/** The example of each status unless a slice gives its own: a real code that answers with it (core/errors.ts). */
const EXAMPLES: Record<number, ErrorExample> = {
  400: { code: ApiCode.ValidationError, message: 'prompts[0].box: box has width 0 and height 0.3; both must be > 0', details: { issues: [{ path: 'prompts[0].box', message: 'box has width 0 and height 0.3; both must be > 0', code: 'custom' }] } },
  401: { code: ApiCode.Unauthorized, message: "this server requires an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'" },
  403: { code: ApiCode.ForbiddenPath, message: "video_path '../secret.mp4' is outside the server's media directory; give a path relative to MEDIA_ROOT", details: { video_path: '../secret.mp4' } },
  404: { code: ApiCode.NotFound, message: 'no route GET /api/v1/nothing; see /docs for the API' },
  409: { code: ApiCode.SessionBusy, message: 'prompt: the session is propagating; wait for it to finish (or cancel it) first' },
  413: { code: ApiCode.BodyTooLarge, message: 'the request body is 30000000 bytes, larger than MAX_BODY_MB = 25 MB; send a smaller image', details: { max_body_bytes: 26214400 } },
  415: { code: ApiCode.UnsupportedMediaType, message: "Content-Type text/plain is not accepted here; send 'application/json'", details: { content_type: 'text/plain' } },
  421: { code: ApiCode.WrongReplica, message: "session_id 'sam3-1.6f0c2a' belongs to replica 'sam3-1' and this is replica 'sam3-0'; send the request to 'sam3-1'", details: { field: 'session_id', owner: 'sam3-1', replica: 'sam3-0' } },
  422: { code: ApiCode.VideoDecodeFailed, message: 'decoding frames 0-15 failed: ffmpeg exited with code 1', details: { start: 0, end: 15, ffmpeg: 'Invalid data found when processing input' } },
  426: { code: ApiCode.UpgradeRequired, message: 'this is a WebSocket endpoint: connect with a WebSocket client (Upgrade: websocket) and send the propagation options as JSON' },
  429: {
    code: ApiCode.TooManySessions,
    message: '8 video sessions are open (MAX_SESSIONS); close one with DELETE /api/v1/video/session/{session_id} or retry after 60 s, when an idle one may have expired',
    details: { max_sessions: 8, retry_after_seconds: 60 },
  },
  500: { code: ApiCode.InternalError, message: 'internal server error; the server log has the details under this request id' },
  501: { code: ApiCode.VideoUnsupported, message: 'the loaded model bundle has no video tracker; export a sam3_video checkpoint' },
  503: { code: ApiCode.ModelLoading, message: 'the model is still loading; retry shortly (GET /health says when it is ready)' },
};

function errorExample(e: ErrorExample) {
  return { error: { code: e.code, message: e.message, details: e.details ?? {}, request_id: '5f1c9d2e-8a3b-4c6d-9e0f-1a2b3c4d5e6f' } };
}

function errorResponse(status: number, text: ErrorText | undefined): ResponseConfig {
  const description = typeof text === 'object' ? text.description : (text ?? COMMON[status] ?? 'Error');
  const example = typeof text === 'object' ? text.example : EXAMPLES[status];
  return { description, content: { 'application/json': { schema: ErrorResponseSchema, ...(example ? { example: errorExample(example) } : {}) } } };
}

/** A slice's error responses: `texts` say what each status means on its endpoints (and may give its example). */
export function errorResponses(texts: Record<number, ErrorText>): (...statuses: number[]) => Record<number, ResponseConfig> {
  return (...statuses) => Object.fromEntries(statuses.map((s) => [s, errorResponse(s, texts[s])]));
}

type Operation = { security?: unknown[]; responses?: Record<string, unknown> };

export function buildOpenApi(register: ReadonlyArray<(registry: OpenAPIRegistry) => void>, info: { version: string; defaultThreshold: number; secured?: boolean }): Record<string, unknown> {
  const registry = new OpenAPIRegistry();
  // API_KEYS (core/access.ts): both ways of sending a key; public operations say security: [].
  if (info.secured) {
    registry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <one of API_KEYS>' });
    registry.registerComponent('securitySchemes', 'apiKey', { type: 'apiKey', in: 'header', name: 'X-API-Key', description: 'X-API-Key: <one of API_KEYS>' });
  }
  for (const r of register) r(registry);
  const generator = new OpenApiGeneratorV31(registry.definitions);
  const doc = generator.generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'SAM 3 inference server',
      version: info.version,
      description: `Segment Anything 3 over a native libtorch core. Masks are COCO RLE ({size: [h, w], counts}); boxes are normalised [x, y, width, height] (points [x, y]). Default confidence threshold ${info.defaultThreshold}.`,
    },
    ...(info.secured ? { security: [{ bearer: [] }, { apiKey: [] }] } : {}),
    tags: [
      { name: 'image', description: 'Image segmentation' },
      { name: 'video', description: 'Video sessions: prompt frames, track objects through the video (HTTP or WebSocket)' },
      { name: 'operations', description: 'Health, model information, metrics, documentation' },
    ],
  }) as unknown as Record<string, unknown>;
  if (info.secured) {
    // Every operation that needs a key can answer 401.
    for (const ops of Object.values(doc.paths as Record<string, Record<string, Operation>>)) {
      for (const op of Object.values(ops)) {
        if (op.security?.length === 0) continue;
        op.responses = {
          ...op.responses,
          401: { description: COMMON[401], content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorResponse' }, example: errorExample(EXAMPLES[401]!) } } },
        };
      }
    }
  }
  return doc;
}
