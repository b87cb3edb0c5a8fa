/**
 * POST /api/v1/image/batch: several images with their prompts in one request. Each image succeeds
 * or fails on its own: a bad image (not base64, not an image, too large, an unknown image_id) or a
 * bad item (its prompts, an unknown field) becomes that item's {http_status, error} in `results`, the
 * same error body /api/v1/image/segment would have answered, and the other images still get their
 * masks; the answer is 200 whenever the request itself is well formed. What fails the whole request
 * is what concerns it as a whole: the body (not JSON, an unknown top-level field, no images or too
 * many), image_ids of several replicas (400), another replica's image_ids (421, so a proxy can
 * follow it to the owner once), and a server that cannot take work (503 loading or shutting down).
 */
import Router from '@koa/router';

import type { Prompt } from '../../index.js';
import type { AppContext, AppDeps, AppRouter, AppState } from '../core/context.js';
import { ApiError, type ErrorBody, errorBody, toApiError, validationError } from '../core/errors.js';
import { ReplicaIds } from '../core/replica.js';
import { parseOrThrow } from '../core/validate.js';
import { type ImageRef, imageRef } from './image-input.js';
import type { HeldFeatures, InferenceService } from './inference.js';
import { buildQueries, concatResults, imageFacts, ms } from './routes.js';
import type { ImageSchemas } from './schemas.js';

interface Item {
  ref: ImageRef;
  queries: Prompt[];
  owners: number[];
  threshold: number;
}

/** An item's outcome: its result, or its error (HTTP status and error body). */
type Outcome = { ok: Record<string, unknown> } | { http_status: number; error: ErrorBody['error'] };

export function batchRoutes(deps: AppDeps, schemas: ImageSchemas, serviceOf: () => InferenceService): AppRouter {
  const { config, body } = deps;
  const router = new Router<AppState, AppContext>({ prefix: '/api/v1/image' });

  router.post('/batch', async (ctx) => {
    const { fields } = await body.read(ctx, false);
    const req = parseOrThrow(schemas.BatchEnvelope, fields);
    const outcomes: (Outcome | undefined)[] = req.images.map(() => undefined);
    const fail = (i: number, err: unknown) => (outcomes[i] = itemError(err, i, deps, ctx));

    // Each item is validated alone; one that fails validation fails alone.
    const parsed = req.images.map((raw, i) => {
      try {
        return parseOrThrow(schemas.BatchItem, raw, `images[${i}]`);
      } catch (err) {
        fail(i, err);
        return undefined;
      }
    });
    // Request-level: the image_ids must all be one replica's, and that replica this one (421 otherwise).
    sameReplica(parsed.map((item) => item?.image_id));
    parsed.forEach((item, i) => item?.image_id !== undefined && deps.replica.own(item.image_id, `images[${i}].image_id`));

    const items = parsed.map((item, i): Item | undefined => {
      if (!item) return undefined;
      const where = `images[${i}]`;
      try {
        return {
          ref: imageRef(item.image, item.image_id, where),
          ...buildQueries(item.prompts, `${where}.prompts`),
          threshold: item.confidence_threshold ?? req.confidence_threshold ?? config.confidenceThreshold,
        };
      } catch (err) {
        fail(i, err);
        return undefined;
      }
    });

    const service = serviceOf(); // 503 for the whole request while loading
    const start = performance.now();
    // All images are submitted at once so new ones share batched encoder passes.
    const held = await Promise.all(
      items.map(async (item, i): Promise<HeldFeatures | undefined> => {
        if (!item) return undefined;
        try {
          return await service.acquire(item.ref, ctx.state.log, `images[${i}].image_id`);
        } catch (err) {
          fail(i, err);
          return undefined;
        }
      }),
    );
    try {
      await Promise.all(
        items.map(async (item, i) => {
          const h = held[i];
          if (!item || !h) return;
          try {
            const results = await service.segment(h, item.queries, item.threshold);
            outcomes[i] = { ok: { ...(await concatResults(results, item.owners, req.mask_format)), ...imageFacts(h) } };
          } catch (err) {
            fail(i, err);
          }
        }),
      );
    } finally {
      for (const h of held) h?.release();
    }
    // Every item has its outcome by now: a validation, image, encoding or segmentation error, or its result.
    const done = outcomes as Outcome[];
    ctx.body = { results: done.map((o) => ('ok' in o ? o.ok : o)), num_failed: done.filter((o) => !('ok' in o)).length, inference_time_ms: ms(start) };
  });

  return router;
}

/** A batch's image_ids must be one replica's: a proxy can send the request to one replica only. */
function sameReplica(imageIds: (string | undefined)[]): void {
  const first = new Map<string, number>();
  imageIds.forEach((id, i) => {
    const owner = id === undefined ? undefined : ReplicaIds.owner(id);
    if (owner !== undefined && !first.has(owner)) first.set(owner, i);
  });
  if (first.size > 1) {
    const [[a, i], [b, j]] = [...first.entries()] as [[string, number], [string, number]];
    throw validationError(`images[${i}].image_id belongs to replica '${a}' and images[${j}].image_id to replica '${b}'; one batch can name the image_ids of one replica only: split it, or send those images' bytes instead`, {
      replicas: [...first.keys()],
    });
  }
}

/**
 * One item's error as the error body /segment would answer, its message starting with the item's
 * place and its details carrying the index (and retry_after_seconds where a 503 or 429 says when
 * to retry). Our faults are logged with the request id, as a failed request would be.
 */
function itemError(err: unknown, index: number, deps: AppDeps, ctx: AppContext): Outcome {
  const api = toApiError(err, deps.errorContext());
  const where = `images[${index}]`;
  if (api.status >= 500) ctx.state.log.error({ err, code: api.code, index }, 'batch item failed');
  else ctx.state.log.info({ code: api.code, message: api.message, index }, 'batch item refused');
  const message = api.message.startsWith(where) ? api.message : `${where}: ${api.message}`;
  const retry = api.headers['Retry-After'];
  const details = { ...api.details, index, ...(retry !== undefined ? { retry_after_seconds: Number(retry) } : {}) };
  return { http_status: api.status, error: errorBody(new ApiError(api.status, api.code, message, details), ctx.state.requestId).error };
}
