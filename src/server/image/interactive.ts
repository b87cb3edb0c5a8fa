/**
 * POST /api/v1/image/interactive: clicks and boxes on one object (or several), refined call after
 * call. The image's features come from the same cache (and image_id) as the concept endpoints; the
 * first call on an image runs the tracker's neck over its cached ViT output and keeps the result
 * with the entry (its byte count is refreshed), later calls run only the prompt encoder and mask
 * decoder. Each call's best low-res logits stay on the server as a mask_input handle for the next.
 */
import { randomBytes } from 'node:crypto';

import Router from '@koa/router';

import { ErrorCode, HandleCache, type InteractivePrompt, type Label, type InteractiveSegmentation, type MaskLogits, Sam3Error, formatMasks } from '../../index.js';
import type { ServerConfig } from '../core/config.js';
import type { AppContext, AppDeps, AppRouter, AppState } from '../core/context.js';
import { validationError } from '../core/errors.js';
import { parseOrThrow } from '../core/validate.js';
import { imageRef } from './image-input.js';
import type { InferenceService } from './inference.js';
import type { InteractiveRequest, InteractiveSchemas } from './interactive-schemas.js';

/** mask_input handles kept: at most this many, and this many bytes (a handle at facebook/sam3's size: 288 x 288 floats, 324 KiB). */
export const MASK_INPUT_MAX_ENTRIES = 4096;
export const MASK_INPUT_MAX_BYTES = 64 * 1024 * 1024;

interface StoredLogits {
  logits: MaskLogits;
  imageId: string;
  readonly bytes: number;
  dispose(): void;
}

/** The mask_input handles of one model pool: LRU by entries and bytes, expiring when unused for the feature cache's TTL (each use renews it). */
export class MaskInputStore {
  private readonly cache: HandleCache<StoredLogits>;
  private readonly sweeper: NodeJS.Timeout;

  constructor(config: ServerConfig) {
    const ttlMs = config.featureCache.ttlMs;
    this.cache = new HandleCache<StoredLogits>({ maxEntries: MASK_INPUT_MAX_ENTRIES, maxBytes: MASK_INPUT_MAX_BYTES, ttlMs });
    // Reads expire lazily; the sweep frees the device memory of handles nobody asks for again.
    this.sweeper = setInterval(() => this.cache.sweep(), Math.min(Math.max(ttlMs / 2, 1000), 60_000));
    this.sweeper.unref();
  }

  put(logits: MaskLogits, imageId: string): string {
    const id = `mi_${randomBytes(16).toString('hex')}`;
    this.cache.insert(id, { logits, imageId, bytes: logits.bytes, dispose: () => logits.dispose() }).release();
    return id;
  }

  /** A pinned handle for one request; ERR_SAM3_UNKNOWN_MASK_INPUT when it is not (or no longer) here. */
  lease(id: string, where: string, imageId: string) {
    const lease = this.cache.lease(id);
    if (!lease) {
      throw new Sam3Error(
        ErrorCode.UnknownMaskInput,
        `${where} ${id} is not held by the server (never issued here, expired after FEATURE_CACHE_TTL_SECONDS unused, or evicted when ${MASK_INPUT_MAX_ENTRIES} handles or ${MASK_INPUT_MAX_BYTES / 1024 / 1024} MiB were held); send the object's points and box again without mask_input`,
        { mask_input: id },
      );
    }
    if (lease.value.imageId !== imageId) {
      lease.release();
      throw validationError(`${where} ${id} was made on another image; a mask_input refines the same object on the same image`, { mask_input: id });
    }
    return lease;
  }

  close(): void {
    clearInterval(this.sweeper);
    this.cache.clear();
  }
}

const ms = (start: number) => Math.round((performance.now() - start) * 10) / 10;

function objectsOf(req: InteractiveRequest): { list: NonNullable<InteractiveRequest['objects']>; single: boolean } {
  const top = req.points !== undefined || req.box !== undefined || req.mask_input !== undefined;
  if (req.objects && top) throw validationError('objects is given with points, box or mask_input; send one object at the top level or several under objects, not both');
  const list = req.objects ?? [{ points: req.points, box: req.box, mask_input: req.mask_input }];
  list.forEach((o, i) => {
    if ((o.points?.length ?? 0) === 0 && o.box === undefined) {
      const where = req.objects ? `objects[${i}]` : 'the request';
      throw validationError(`${where} has no points and no box: give at least one point (a click) or a box around the object${o.mask_input ? ' (a mask_input refines a prompt, it does not replace it)' : ''}`);
    }
  });
  return { list, single: !req.objects };
}

export function interactiveRoutes(deps: AppDeps, schemas: InteractiveSchemas, serviceOf: () => InferenceService, storeOf: () => MaskInputStore): AppRouter {
  const router = new Router<AppState, AppContext>({ prefix: '/api/v1/image' });

  router.post('/interactive', async (ctx) => {
    const { fields } = await deps.body.read(ctx, false);
    const req = parseOrThrow(schemas.InteractiveRequest, fields);
    const ref = imageRef(req.image, req.image_id);
    const { list, single } = objectsOf(req);
    const service = serviceOf();
    const store = storeOf();
    const start = performance.now();
    const held = await service.acquire(ref, ctx.state.log);
    // The image's content id (sha256 of its bytes), without the replica prefix an image_id carries.
    const contentId = ref.kind === 'id' ? deps.replica.local(ref.imageId, 'image_id') : ref.imageId;
    const leases: { release(): void }[] = [];
    try {
      const prompts: InteractivePrompt[] = list.map((o, i) => {
        const p: InteractivePrompt = {};
        if (o.points) p.points = o.points.map((q) => ({ point: q.point, label: q.label as Label }));
        if (o.box) p.box = o.box;
        if (o.mask_input) {
          const where = single ? 'mask_input' : `objects[${i}].mask_input`;
          // Handles are replica-owned like image_ids: another replica's is a 421 naming its owner.
          const lease = store.lease(deps.replica.local(o.mask_input, where), where, contentId);
          leases.push(lease);
          p.maskInput = lease.value.logits;
        }
        return p;
      });
      const results = await service.interactive(held, prompts, req.multimask_output);
      // Stored first, so that the logits are owned by the store even if formatting a mask fails.
      // Bound to the image's content id (sha256 of its bytes), which exists with the feature cache off too.
      const ids = results.map((r) => deps.replica.mint(store.put(r.maskInput, contentId)));
      const out = await Promise.all(results.map((r, i) => resultBody(r, ids[i]!, req.mask_format)));
      const facts = { image_id: held.imageId, image_size: { width: held.features.width, height: held.features.height }, cache_hit: held.cacheHit, inference_time_ms: ms(start) };
      ctx.body = single ? { ...out[0]!, ...facts } : { objects: out, ...facts };
    } finally {
      for (const l of leases) l.release();
      held.release();
    }
  });

  return router;
}

async function resultBody(r: InteractiveSegmentation, maskInput: string, format: InteractiveRequest['mask_format']) {
  return { masks: await formatMasks(r.masks, format), iou_scores: r.iouScores, boxes: r.boxes, object_score: r.objectScore, mask_input: maskInput };
}
