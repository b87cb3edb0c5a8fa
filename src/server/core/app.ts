/**
 * The HTTP service as a factory: createApp() returns the Koa app at once and loads the model in the
 * background (/health says 503 "loading" until it is ready), so tests run it in-process on port 0
 * and main.ts only adds the listening socket and signal handling.
 *
 * Shutdown (close): refuse new requests with 503, let in-flight ones finish (up to
 * SHUTDOWN_TIMEOUT_MS), close the socket, then free every native resource (cached features,
 * models, engines).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import path from 'node:path';

import Koa from 'koa';
import websockify from 'koa-websocket';
import { type Logger, pino } from 'pino';

import { ApiCode, ApiError, errorBody, toApiError } from './api-error.js';
import { BodyReader } from './body.js';
import { resolveBundle } from './bundle-source.js';
import { type ServerConfig, packageRoot } from './config.js';
import type { AppContext, AppDeps, AppState, Phase } from './context.js';
import { ModelPool, defaultDevice } from './engines.js';
import { InferenceService } from './inference.js';
import { Metrics } from './metrics.js';
import { buildOpenApi } from './openapi.js';
import { docsRoutes } from './routes/docs.js';
import { healthRoutes, notReady } from './routes/health.js';
import { imageRoutes } from './routes/image.js';
import { makeSchemas } from './schemas.js';
import { VideoMetrics } from './video/metrics.js';
import { videoRoutes } from './video/routes.js';
import { SessionManager } from './video/sessions.js';
import { MAX_MESSAGE_BYTES, PropagationSockets } from './video/socket.js';

export interface AppOptions {
  config: ServerConfig;
  /** Default: a pino logger at config.logLevel writing JSON lines to stdout. */
  logger?: Logger;
  /** Clock for cache and video session expiry (tests). Default Date.now. */
  now?: () => number;
  /** Collect Node's default process metrics (memory, event loop, GC). Default true. */
  defaultMetrics?: boolean;
}

export interface Sam3App {
  app: Koa<AppState, AppContext>;
  /** Resolves when the model is loaded on every device; rejects with the reason it could not be. */
  ready: Promise<void>;
  phase(): Phase;
  /** Listens on port (0: any free port); the server is closed by close(). */
  listen(port?: number, host?: string): Promise<Server>;
  /** Graceful shutdown; safe to call more than once. */
  close(): Promise<void>;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Requests being handled now. */
  inflight(): number;
  /** The engines and models once loaded (for diagnostics and extensions such as video routes). */
  pool(): ModelPool | undefined;
  /** The open video sessions. */
  readonly sessions: SessionManager;
}

/** Optional request id from the client: kept when it is short and plain, replaced otherwise. */
const CLIENT_ID = /^[\w.:-]{1,128}$/;

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export function createApp(options: AppOptions): Sam3App {
  const { config } = options;
  const logger = options.logger ?? pino({ level: config.logLevel, base: { service: 'sam3-server' } });
  // The batch-size histogram's buckets: up to the configured batch, or CUDA's default (8) when each
  // device has its own.
  const metrics = new Metrics({ defaultMetrics: options.defaultMetrics, maxBatchSize: config.batching.maxBatchSize ?? 8 });
  const schemas = makeSchemas({ maxPrompts: config.limits.maxPrompts, maxBatchImages: config.limits.maxBatchImages, defaultThreshold: config.confidenceThreshold });
  const startedAt = Date.now();

  let phase: Phase = 'loading';
  let loadError: Error | undefined;
  let pool: ModelPool | undefined;
  let service: InferenceService | undefined;
  let openapi: Record<string, unknown> | undefined;
  let inflight = 0;
  let drained: (() => void) | undefined;
  let server: Server | undefined;
  let closing: Promise<void> | undefined;

  const errorContext = () => ({ maxBodyBytes: config.limits.maxBodyBytes, shuttingDown: phase === 'shutting_down' || phase === 'closed', retryAfterSeconds: config.batching.retryAfterSeconds });

  const deps: AppDeps = {
    config,
    schemas,
    body: new BodyReader(config.limits.maxBodyBytes),
    metrics,
    startedAt,
    phase: () => phase,
    loadError: () => loadError,
    bundleDir: () => pool?.bundleDir,
    service: () => {
      if (phase !== 'ready' || !service) throw notReady(phase, config.batching.retryAfterSeconds);
      return service;
    },
    pool: () => {
      if (phase !== 'ready' || !pool) throw notReady(phase, config.batching.retryAfterSeconds);
      return pool;
    },
    errorContext,
    openapi: () => (openapi ??= buildOpenApi(schemas, config, packageVersion())),
    activeSessions: () => sessions.size,
  };

  const sessions = new SessionManager({
    config: config.video,
    pool: () => deps.pool(),
    metrics: new VideoMetrics(metrics.registry),
    logger,
    ...(options.now ? { now: options.now } : {}),
  });
  const sockets = new PropagationSockets(deps, sessions, logger);

  const ready = (async () => {
    const devices = config.devices ?? [defaultDevice()];
    const bundleDir = await resolveBundle(config, devices, logger);
    const loaded = await ModelPool.load(bundleDir, { ...config, devices }, logger, { onBatch: (d, r) => metrics.onBatch(d, r) }, options.now);
    if (phase !== 'loading') {
      // close() ran while we were loading: free what we just made.
      loaded.dispose();
      return;
    }
    pool = loaded;
    service = new InferenceService(loaded, config, metrics);
    metrics.attach(loaded);
    phase = 'ready';
    logger.info({ bundle: bundleDir, devices }, 'ready');
  })();
  ready.catch((err: Error) => {
    if (phase === 'loading') phase = 'failed';
    loadError = err;
    logger.error({ err }, 'the model could not be loaded');
  });

  // koa-websocket: WebSocket upgrades on the same port run app.ws's middleware (video/socket.ts).
  const app = websockify(new Koa<AppState, AppContext>(), { maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false, verifyClient: sockets.verifyClient });
  app.proxy = false;
  app.ws.use(sockets.middleware);

  // Request id and logger; access log and HTTP metrics once the response status is final.
  app.use(async (ctx, next) => {
    const given = ctx.get('x-request-id');
    const requestId = CLIENT_ID.test(given) ? given : randomUUID();
    ctx.state.requestId = requestId;
    ctx.state.log = logger.child({ req_id: requestId });
    ctx.set('X-Request-Id', requestId);
    const start = performance.now();
    try {
      await next();
    } finally {
      const seconds = (performance.now() - start) / 1000;
      const route = (ctx as unknown as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
      const labels = { method: ctx.method, route: String(route), status: String(ctx.status) };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, seconds);
      // 503s are load shedding or lifecycle (loading, shutting down), not faults; successful
      // probes and scrapes would drown the log at info.
      const probe = ctx.status < 400 && (ctx.path === '/health' || ctx.path === '/metrics' || ctx.path.startsWith('/docs/'));
      const level = ctx.status >= 500 && ctx.status !== 503 ? 'error' : probe ? 'debug' : 'info';
      ctx.state.log[level]({ method: ctx.method, url: ctx.url, status: ctx.status, ms: Math.round(seconds * 10000) / 10 }, 'request');
    }
  });

  // Every failure becomes {error: {code, message, details, request_id}}; ours are logged with the stack.
  app.use(async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new ApiError(404, ApiCode.NotFound, `no route ${ctx.method} ${ctx.path}; see /docs for the API`);
      }
    } catch (err) {
      const api = toApiError(err, errorContext());
      if (api.status >= 500) ctx.state.log.error({ err, code: api.code }, 'request failed');
      else ctx.state.log.info({ code: api.code, message: api.message }, 'request refused');
      ctx.status = api.status;
      for (const [k, v] of Object.entries(api.headers)) ctx.set(k, v);
      if (phase === 'shutting_down') ctx.set('Connection', 'close');
      ctx.body = errorBody(api, ctx.state.requestId);
    }
  });

  // While shutting down, new work is refused; /health and /metrics still answer.
  app.use(async (ctx, next) => {
    const ops = ctx.method === 'GET' && (ctx.path === '/health' || ctx.path === '/metrics');
    if ((phase === 'shutting_down' || phase === 'closed') && !ops) {
      throw new ApiError(503, ApiCode.ShuttingDown, 'the server is shutting down; retry on another instance', {}, { 'Retry-After': String(config.batching.retryAfterSeconds) });
    }
    // A request is in flight until its response is written (or the client goes away), which is
    // after every middleware has returned: count it down on the socket's 'close', not here.
    inflight++;
    let counted = true;
    ctx.res.once('close', () => {
      if (!counted) return;
      counted = false;
      inflight--;
      if (inflight === 0) drained?.();
    });
    await next();
  });

  for (const router of [imageRoutes(deps), videoRoutes(deps, sessions), healthRoutes(deps), docsRoutes(deps)]) {
    app.use(router.routes());
    app.use(router.allowedMethods({ throw: true }));
  }

  app.on('error', (err: Error) => logger.error({ err }, 'unhandled error in the HTTP layer'));

  const close = (): Promise<void> =>
    (closing ??= (async () => {
      const wasLoading = phase === 'loading';
      phase = 'shutting_down';
      logger.info({ inflight, sessions: sessions.size }, 'shutting down: refusing new requests, finishing in-flight ones');
      // WebSocket propagations are cancelled at once (their sockets would keep the server open).
      const socketsClosed = sockets.shutdown();
      const serverClosed = server
        ? new Promise<void>((resolve) => {
            server!.close(() => resolve());
            server!.closeIdleConnections();
          })
        : Promise.resolve();
      if (inflight > 0) {
        const done = new Promise<void>((resolve) => (drained = resolve));
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), config.shutdownTimeoutMs)));
        const finished = await Promise.race([done.then(() => true), timeout]);
        clearTimeout(timer);
        if (!finished) logger.warn({ inflight }, `SHUTDOWN_TIMEOUT_MS (${config.shutdownTimeoutMs}) passed with requests still running; closing anyway`);
      }
      await socketsClosed;
      app.ws.server?.close();
      server?.closeAllConnections();
      await serverClosed;
      if (wasLoading) await ready.catch(() => undefined);
      // Sessions hold native memory on the engines: free them before the engines.
      await sessions.closeAll();
      metrics.detach();
      pool?.dispose();
      pool = undefined;
      service = undefined;
      phase = 'closed';
      logger.info('shut down');
    })());

  const listen = (port = config.port, host = config.host): Promise<Server> =>
    new Promise((resolve, reject) => {
      const s = app.listen(port, host);
      s.once('listening', () => {
        server = s;
        resolve(s);
      });
      s.once('error', reject);
    });

  return { app, ready, phase: () => phase, listen, close, metrics, logger, inflight: () => inflight, pool: () => pool, sessions };
}
