/**
 * The video slice: /api/v1/video/* routes and the propagation WebSocket, their schemas and OpenAPI
 * paths, the session manager and the video metrics.
 */
import type { AppDeps, Slice } from '../core/context.js';
import { VideoMetrics } from './metrics.js';
import { registerVideoPaths } from './openapi.js';
import { videoRoutes } from './routes.js';
import { makeVideoSchemas } from './schemas.js';
import { SessionManager } from './sessions.js';
import { MAX_MESSAGE_BYTES, PropagationSockets, SOCKET_PATH } from './socket.js';
import { uploadRoutes } from './upload-routes.js';
import { UploadStore } from './uploads.js';

export function videoSlice(deps: AppDeps, now?: () => number): Slice & { sessions: SessionManager } {
  const { config, logger } = deps;
  const schemas = makeVideoSchemas({ maxPrompts: config.limits.maxPrompts, defaultThreshold: config.confidenceThreshold });
  const sessions = new SessionManager({
    config: config.video,
    pool: () => deps.pool(),
    metrics: new VideoMetrics(deps.metrics.registry),
    logger,
    ids: deps.replica,
    ...(now ? { now } : {}),
  });
  const sockets = new PropagationSockets(deps, schemas, sessions, logger);
  const uploads = new UploadStore({
    mediaRoot: config.video.mediaRoot,
    ttlMs: config.video.uploadTtlMs,
    ids: deps.replica,
    logger,
    // Sessions record the canonical id of their upload (this replica's prefix, lower case).
    sessionsByUpload: () => {
      const open = new Map<string, string[]>();
      for (const s of sessions.list()) {
        if (s.source.videoId === null) continue;
        const local = deps.replica.local(s.source.videoId, 'video_id');
        open.set(local, [...(open.get(local) ?? []), s.id]);
      }
      return open;
    },
  });
  uploads.start();
  return {
    sessions,
    routers: [videoRoutes(deps, schemas, sessions, uploads), uploadRoutes(deps, uploads)],
    openapi: (registry) => registerVideoPaths(registry, schemas),
    websocket: {
      matches: (pathname) => SOCKET_PATH.test(pathname),
      verifyClient: sockets.verifyClient,
      middleware: sockets.middleware,
      maxPayload: MAX_MESSAGE_BYTES,
    },
    // WebSocket propagations are cancelled at once (their sockets would keep the server open).
    drain: () => sockets.shutdown(),
    // Sessions hold native memory on the engines.
    close: async () => {
      await uploads.stop();
      await sessions.closeAll();
    },
  };
}
