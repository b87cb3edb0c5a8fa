/**
 * The HTTP service as a factory: createApp() returns the Koa app at once and loads the model in the
 * background (/health says 503 "loading" until it is ready), so tests run it in-process on port 0
 * and main.ts only adds the listening socket and signal handling. The API is made of slices
 * (image/, video/, ops/), each with its routes, schemas, OpenAPI paths and metrics; this file
 * composes them and owns the lifecycle.
 *
 * Shutdown (close): withdraw readiness (/health/ready 503) and keep serving for SHUTDOWN_DELAY_MS,
 * then answer new requests with 503 + Connection: close while in-flight ones finish (up to
 * SHUTDOWN_TIMEOUT_MS; the socket stays open so clients get an answer, not a refused connection),
 * close the socket, then free every native resource (sessions, cached features, models, engines).
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import path from 'node:path';

import Koa from 'koa';
import { Gauge } from 'prom-client';
import websockify from 'koa-websocket';
import { type Logger, pino } from 'pino';

import { ErrorCode, Sam3Error, keepNativeHeapTrimmed } from '../../index.js';
import { DeviceMetrics } from '../devices/metrics.js';
import { ModelPool, defaultDevice } from '../devices/workers.js';
import { imageSlice } from '../image/slice.js';
import { opsSlice } from '../ops/slice.js';
import type { SessionManager } from '../video/sessions.js';
import { videoSlice } from '../video/slice.js';
import { ApiKeys, selectProtocol } from './access.js';
import { BodyReader } from './body.js';
import { compression } from './compression.js';
import { type ServerConfig, packageRoot } from './config.js';
import type { AppContext, AppDeps, AppState, Phase, Slice } from './context.js';
import { corsMiddleware } from './cors.js';
import { ReplicaIds } from './replica.js';
import { ApiCode, shuttingDown } from './errors.js';
import { guardConnections, guardUpgrades, refuseUpgrade } from './connections.js';
import { Metrics } from './metrics.js';
import { methodNotAllowed } from './methods.js';
import { InflightRequests, errorResponses, requestContext } from './middleware.js';
import { resolveBundle } from './model-source.js';
import { logNativeWarnings } from './native-log.js';
import { buildOpenApi } from './openapi.js';

export interface AppOptions {
  config: ServerConfig;
  /** Default: a pino logger at config.logLevel writing JSON lines to stdout. */
  logger?: Logger;
  /** Clock for cache and video session expiry (tests). Default Date.now. */
  now?: () => number;
  /** Collect Node's default process metrics (memory, event loop, GC). Default true. */
  defaultMetrics?: boolean;
  /**
   * Start loading the model at once (default true). false: only when load() is called, so that
   * main.ts binds the port first and a taken port fails before any model work.
   */
  autoLoad?: boolean;
}

export interface Sam3App {
  app: Koa<AppState, AppContext>;
  /** Resolves when the model is loaded on every device; rejects with the reason it could not be. */
  ready: Promise<void>;
  /** Starts loading the model if it has not started (see AppOptions.autoLoad); returns `ready`. */
  load(): Promise<void>;
  phase(): Phase;
  /** Listens on port (0: any free port); the server is closed by close(). */
  listen(port?: number, host?: string): Promise<Server>;
  /** Graceful shutdown; safe to call more than once. */
  close(): Promise<void>;
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Requests being handled now. */
  inflight(): number;
  /** The engines and models once loaded (for diagnostics and extensions). */
  pool(): ModelPool | undefined;
  /** The open video sessions. */
  readonly sessions: SessionManager;
}

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Why nothing can be served yet (or any more). */
function notReady(phase: Phase, retryAfterSeconds: number): Sam3Error {
  if (phase === 'loading') {
    return new Sam3Error(ErrorCode.ModelLoading, 'the model is still loading; retry shortly (GET /health says when it is ready)', {}, { retryAfterSeconds });
  }
  if (phase === 'failed') return new Sam3Error(ErrorCode.ModelUnavailable, 'the model failed to load; see GET /health and the server log', {});
  return shuttingDown();
}

export function createApp(options: AppOptions): Sam3App {
  const { config } = options;
  const logger = options.logger ?? pino({ level: config.logLevel, base: { service: 'sam3-server' } });
  const metrics = new Metrics({ defaultMetrics: options.defaultMetrics });
  // The batch-size histogram's buckets: up to the configured batch, or CUDA's default (8) when each
  // device has its own.
  const deviceMetrics = new DeviceMetrics(metrics.registry, { maxBatchSize: config.batching.maxBatchSize ?? 8 });
  const inflight = new InflightRequests();
  const apiKeys = new ApiKeys(config.apiKeys);
  new Gauge({
    name: 'sam3_http_requests_in_flight',
    help: 'HTTP requests being handled (the scrape that reads this included)',
    registers: [metrics.registry],
    collect: function () {
      this.set(inflight.size);
    },
  });
  const startedAt = Date.now();

  let phase: Phase = 'loading';
  let draining = false;
  let loadError: Error | undefined;
  let pool: ModelPool | undefined;
  let openapi: Record<string, unknown> | undefined;
  let server: Server | undefined;
  let closing: Promise<void> | undefined;
  let stopNativeWarnings: (() => void) | undefined;
  let stopHeapTrim: (() => void) | undefined;

  const deps: AppDeps = {
    config,
    replica: new ReplicaIds(config.replica),
    body: new BodyReader(config.limits.maxBodyBytes, config.limits.clientIdleTimeoutMs),
    metrics,
    logger,
    startedAt,
    phase: () => phase,
    draining: () => draining,
    loadError: () => loadError,
    pool: () => {
      // While shutting down, requests admitted before it began still reach the models (new ones
      // are refused by the in-flight middleware); close() frees them only after those finished.
      if ((phase !== 'ready' && phase !== 'shutting_down') || !pool) throw notReady(phase, config.batching.retryAfterSeconds);
      return pool;
    },
    errorContext: () => ({ maxBodyBytes: config.limits.maxBodyBytes, shuttingDown: phase === 'shutting_down' || phase === 'closed', retryAfterSeconds: config.batching.retryAfterSeconds }),
    openapi: () => (openapi ??= buildOpenApi(slices.map((s) => (registry) => s.openapi(registry)), { version: packageVersion(), defaultThreshold: config.confidenceThreshold, secured: apiKeys.enabled })),
    activeSessions: () => video.sessions.size,
  };

  const video = videoSlice(deps, options.now);
  const slices: Slice[] = [imageSlice(deps, deviceMetrics), video, opsSlice(deps)];

  let startLoad!: () => void;
  const ready = new Promise<void>((resolve) => (startLoad = resolve)).then(async () => {
    if (phase !== 'loading') return; // closed before the load began
    stopNativeWarnings = logNativeWarnings(logger);
    const devices = config.devices ?? [defaultDevice()];
    const bundleDir = await resolveBundle(config, devices, logger);
    const loaded = await ModelPool.load(bundleDir, { ...config, devices }, logger, { onBatch: (d, r) => deviceMetrics.onBatch(d, r) }, options.now);
    if (phase !== 'loading') {
      // close() ran while we were loading: free what we just made.
      loaded.dispose();
      return;
    }
    pool = loaded;
    deviceMetrics.attach(loaded);
    if (config.heapTrim.intervalMs > 0) stopHeapTrim = keepNativeHeapTrimmed(config.heapTrim);
    phase = 'ready';
    logger.info({ bundle: bundleDir, devices }, 'ready');
  });
  const load = (): Promise<void> => {
    startLoad();
    return ready;
  };
  if (options.autoLoad !== false) startLoad();
  ready.catch((err: Error) => {
    if (phase === 'loading') phase = 'failed';
    loadError = err;
    // With autoLoad false, whoever called load() reports it (main.ts: one fatal line, then exit).
    if (options.autoLoad !== false) logger.error({ err }, 'the model could not be loaded');
  });

  // koa-websocket: WebSocket upgrades on the same port go to the slice whose path they name.
  const sockets = slices.flatMap((s) => (s.websocket ? [s.websocket] : []));
  const socketOf = (url: string | undefined) => {
    const pathname = new URL(url ?? '/', 'http://localhost').pathname;
    return sockets.find((w) => w.matches(pathname));
  };
  const app = websockify(new Koa<AppState, AppContext>(), {
    maxPayload: Math.max(0, ...sockets.map((w) => w.maxPayload)),
    perMessageDeflate: false,
    handleProtocols: selectProtocol,
    verifyClient: (info, cb) => {
      const ws = socketOf(info.req.url);
      const refused = ws && apiKeys.upgradeRefusal(info.req);
      if (refused) cb(false, refused.status, refused.body, refused.headers);
      else if (ws) ws.verifyClient(info, cb);
      else refuseUpgrade(cb, 404, ApiCode.NotFound, `no WebSocket endpoint at ${new URL(info.req.url ?? '/', 'http://localhost').pathname.slice(0, 200)}; see /docs`);
    },
  });
  app.proxy = false;
  app.ws.use(async (ctx, next) => {
    const ws = socketOf(ctx.url);
    if (ws) await ws.middleware(ctx, next);
  });

  app.use(requestContext(logger, metrics, config.replica));
  const cors = corsMiddleware(config.corsOrigins);
  if (cors) app.use(cors);
  app.use(compression());
  app.use(errorResponses(deps.errorContext));
  app.use(apiKeys.middleware());
  app.use(inflight.middleware(deps.phase, config.batching.retryAfterSeconds));
  app.use(methodNotAllowed());
  for (const slice of slices) {
    for (const router of slice.routers) app.use(router.routes());
  }

  app.on('error', (err: Error) => logger.error({ err }, 'unhandled error in the HTTP layer'));

  const close = (): Promise<void> =>
    (closing ??= (async () => {
      draining = true;
      if (phase === 'ready' && config.shutdownDelayMs > 0) {
        // Load balancers and Kubernetes stop sending only after they see readiness fail (or the
        // endpoint removed); until then requests keep arriving and are still served.
        logger.info({ delay_ms: config.shutdownDelayMs }, 'draining: /health/ready answers 503; still serving for SHUTDOWN_DELAY_MS');
        await new Promise((resolve) => setTimeout(resolve, config.shutdownDelayMs));
      }
      const wasLoading = phase === 'loading';
      phase = 'shutting_down';
      startLoad(); // a deferred load that never began: let `ready` settle
      logger.info({ inflight: inflight.size, sessions: video.sessions.size }, 'shutting down: new requests get 503, finishing in-flight ones');
      // Streams are stopped at once (their sockets would keep the server open).
      const drained = Promise.all(slices.map((s) => s.drain?.()));
      // Idle keep-alive connections are closed now (their next request would otherwise race the
      // close below); the listener stays open while in-flight requests finish, so a new request
      // gets the 503 above instead of a refused connection.
      server?.closeIdleConnections();
      if (!(await inflight.drain(config.shutdownTimeoutMs))) {
        logger.warn({ inflight: inflight.size }, `SHUTDOWN_TIMEOUT_MS (${config.shutdownTimeoutMs}) passed with requests still running; closing anyway`);
      }
      await drained;
      const serverClosed = server ? new Promise<void>((resolve) => server!.close(() => resolve())) : Promise.resolve();
      app.ws.server?.close();
      server?.closeAllConnections();
      await serverClosed;
      if (wasLoading) await ready.catch(() => undefined);
      // Slices hold native memory on the engines (video sessions): free it before the engines.
      for (const slice of slices) await slice.close?.();
      deviceMetrics.detach();
      pool?.dispose();
      pool = undefined;
      stopNativeWarnings?.();
      stopHeapTrim?.();
      phase = 'closed';
      logger.info('shut down');
    })());

  const listen = (port = config.port, host = config.host): Promise<Server> =>
    new Promise((resolve, reject) => {
      const s = app.listen(port, host);
      // ws re-emits the HTTP server's errors (EADDRINUSE, ...) on its own server, where nobody
      // listens: an uncaught exception. The HTTP server's own listener below reports them.
      app.ws.server?.on('error', () => undefined);
      guardConnections(s, logger, config.limits.clientIdleTimeoutMs);
      if (app.ws.server) guardUpgrades(app.ws.server, logger);
      s.once('listening', () => {
        server = s;
        resolve(s);
      });
      s.once('error', reject);
    });

  return { app, ready, load, phase: () => phase, listen, close, metrics, logger, inflight: () => inflight.size, pool: () => pool, sessions: video.sessions };
}
