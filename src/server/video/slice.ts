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
  return {
    sessions,
    routers: [videoRoutes(deps, schemas, sessions)],
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
    close: () => sessions.closeAll(),
  };
}
