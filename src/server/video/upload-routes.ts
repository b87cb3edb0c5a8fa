/**
 * GET /api/v1/video/uploads, GET and DELETE /api/v1/video/uploads/{video_id}: this replica's
 * uploaded videos, their use and retention (video/uploads.ts). Another replica's video_id is a 421
 * naming the owner before any lookup; a malformed one 400; an unknown one 404 media_not_found.
 */
import Router from '@koa/router';

import { openVideo } from '../../index.js';
import type { AppContext, AppDeps, AppRouter, AppState } from '../core/context.js';
import { videoInfo } from './routes.js';
import type { UploadFacts, UploadStore } from './uploads.js';

const iso = (ms: number) => new Date(ms).toISOString();

export function uploadRoutes(deps: AppDeps, uploads: UploadStore): AppRouter {
  const router: AppRouter = new Router<AppState, AppContext>({ prefix: '/api/v1/video' });
  const localOf = (ctx: AppContext) => deps.replica.local(String(ctx.params.video_id), 'video_id').toLowerCase();

  const summary = (f: UploadFacts) => {
    const expires = uploads.expiresAt(f);
    return {
      video_id: deps.replica.mint(f.localId),
      bytes: f.bytes,
      created_at: iso(f.createdAt),
      last_used_at: iso(f.lastUsedAt),
      expires_at: expires === undefined ? null : iso(expires),
      in_use: f.sessions.length > 0 || f.pinned,
      sessions: f.sessions,
    };
  };

  router.get('/uploads', async (ctx) => {
    const list = (await uploads.list()).map(summary);
    ctx.body = { uploads: list, count: list.length, ttl_seconds: uploads.ttlMs > 0 ? uploads.ttlMs / 1000 : null };
  });

  router.get('/uploads/:video_id', async (ctx) => {
    const f = await uploads.get(localOf(ctx));
    const source = await openVideo(f.file, { cacheBytes: 0 });
    try {
      ctx.body = { ...summary(f), video_info: videoInfo(source.info) };
    } finally {
      await source.close();
    }
  });

  router.delete('/uploads/:video_id', async (ctx) => {
    const f = await uploads.delete(localOf(ctx));
    ctx.state.log.info({ video_id: deps.replica.mint(f.localId), bytes: f.bytes }, 'upload deleted');
    ctx.body = { video_id: deps.replica.mint(f.localId), status: 'deleted' };
  });

  return router;
}
