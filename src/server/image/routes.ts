/**
 * Image endpoints: segment, cached-features, embed (batch is image/batch.ts). Each validates its
 * body with the zod schema of image/schemas.ts, resolves the image (bytes or image_id), and runs
 * every prompt of an image on one encoding of the image (HEAD_BATCH_SIZE prompts per head pass).
 */
import Router from '@koa/router';

import { type BoxPrompt, ErrorCode, type Label, MAX_BOXES_PER_PROMPT, type MaskFormat, type Prompt, Sam3Error, type Segmentation, formatMasks } from '../../index.js';
import type { AppContext, AppDeps, AppRouter, AppState } from '../core/context.js';
import { validationError } from '../core/errors.js';
import { type ImageRef, imageRef } from './image-input.js';
import type { HeldFeatures, InferenceService } from './inference.js';
import type { ImageSchemas, PromptInput } from './schemas.js';
import { parseOrThrow } from '../core/validate.js';

interface Queries {
  queries: Prompt[];
  /** Per query: index in the request's prompts of the prompt that owns its masks. */
  owners: number[];
}

/** Each text prompt is one query; box prompts are exemplars for every query, or a query of their own. */
export function buildQueries(prompts: PromptInput[], where = 'prompts'): Queries {
  const texts: { text: string; index: number }[] = [];
  const boxes: BoxPrompt[] = [];
  let firstBox = -1;
  prompts.forEach((p, index) => {
    if (p.type === 'text') texts.push({ text: p.text, index });
    else {
      if (firstBox < 0) firstBox = index;
      boxes.push({ box: p.box, label: p.label as Label });
    }
  });
  if (boxes.length > MAX_BOXES_PER_PROMPT) {
    throw validationError(`${where} has ${boxes.length} box prompts; the limit is ${MAX_BOXES_PER_PROMPT} per request`, { limit: MAX_BOXES_PER_PROMPT });
  }
  if (texts.length === 0) return { queries: [{ boxes }], owners: [firstBox] };
  return {
    queries: texts.map((t) => (boxes.length > 0 ? { text: t.text, boxes } : { text: t.text })),
    owners: texts.map((t) => t.index),
  };
}

async function detections(s: Segmentation, format: MaskFormat) {
  return { masks: await formatMasks(s.masks, format), boxes: s.boxes, scores: s.scores, num_masks: s.numMasks };
}

/** The per-query results of one image concatenated, each mask tagged with its prompt's index, masks in `format`. */
export async function concatResults(results: Segmentation[], owners: number[], format: MaskFormat) {
  const out = { masks: [] as Segmentation['masks'], boxes: [] as Segmentation['boxes'], scores: [] as number[], num_masks: 0, prompt_index: [] as number[] };
  results.forEach((r, q) => {
    out.masks.push(...r.masks);
    out.boxes.push(...r.boxes);
    out.scores.push(...r.scores);
    out.num_masks += r.numMasks;
    for (let i = 0; i < r.numMasks; i++) out.prompt_index.push(owners[q]!);
  });
  return { ...out, masks: await formatMasks(out.masks, format) };
}

export function imageFacts(held: HeldFeatures) {
  return { image_size: { width: held.features.width, height: held.features.height }, image_id: held.imageId, cache_hit: held.cacheHit };
}

export const ms = (start: number) => Math.round((performance.now() - start) * 10) / 10;

async function withFeatures<T>(service: InferenceService, ref: ImageRef, ctx: AppContext, fn: (held: HeldFeatures) => Promise<T>): Promise<T> {
  const held = await service.acquire(ref, ctx.state.log);
  try {
    return await fn(held);
  } finally {
    held.release();
  }
}

export function imageRoutes(deps: AppDeps, schemas: ImageSchemas, serviceOf: () => InferenceService): AppRouter {
  const { config, body } = deps;
  const router = new Router<AppState, AppContext>({ prefix: '/api/v1/image' });

  router.post('/segment', async (ctx) => {
    const { fields, file } = await body.read(ctx, { json: ['prompts'], number: ['confidence_threshold'] });
    const req = parseOrThrow(schemas.SegmentRequest, fields);
    const ref = imageRef(file ?? req.image, req.image_id);
    const { queries, owners } = buildQueries(req.prompts);
    const threshold = req.confidence_threshold ?? config.confidenceThreshold;
    const service = serviceOf();
    const start = performance.now();
    ctx.body = await withFeatures(service, ref, ctx, async (held) => {
      const results = await service.segment(held, queries, threshold);
      return { ...(await concatResults(results, owners, req.mask_format)), ...imageFacts(held), inference_time_ms: ms(start) };
    });
  });

  router.post('/cached-features', async (ctx) => {
    const { fields, file } = await body.read(ctx, { list: ['text_prompts'], number: ['confidence_threshold'] });
    const req = parseOrThrow(schemas.CachedFeaturesRequest, fields);
    const ref = imageRef(file ?? req.image, req.image_id);
    const threshold = req.confidence_threshold ?? config.confidenceThreshold;
    const service = serviceOf();
    const start = performance.now();
    ctx.body = await withFeatures(service, ref, ctx, async (held) => {
      const results = await service.segment(
        held,
        req.text_prompts.map((text) => ({ text })),
        threshold,
      );
      const facts = imageFacts(held);
      return {
        results: await Promise.all(results.map(async (r, i) => ({ prompt: req.text_prompts[i]!, ...(await detections(r, req.mask_format)) }))),
        cache_hit: facts.cache_hit,
        image_id: facts.image_id,
        image_size: facts.image_size,
        inference_time_ms: ms(start),
      };
    });
  });

  router.post('/embed', async (ctx) => {
    const { fields, file } = await body.read(ctx, {});
    const req = parseOrThrow(schemas.EmbedRequest.partial(), fields);
    const ref = imageRef(file ?? req.image, undefined);
    const service = serviceOf();
    if (!service.cacheEnabled) {
      throw new Sam3Error(ErrorCode.FeatureCacheDisabled, 'embedding needs the feature cache, and this server runs with ENABLE_FEATURE_CACHE=false; use /api/v1/image/segment with the image instead');
    }
    const start = performance.now();
    ctx.body = await withFeatures(service, ref, ctx, async (held) => {
      if (!held.worker.cache?.has(held.cacheKey!)) {
        ctx.state.log.warn({ image_id: held.imageId, bytes: held.features.bytes }, 'features evicted at once: FEATURE_CACHE_MAX_MB is smaller than one image');
      }
      return { ...imageFacts(held), image_id: held.imageId!, expires_in_seconds: config.featureCache.ttlMs / 1000, inference_time_ms: ms(start) };
    });
  });

  return router;
}
