/**
 * The middleware every request goes through, outermost first: request id, access log and HTTP
 * metrics; errors turned into JSON bodies (the status from errors.ts); refusal of new work while
 * shutting down, and the in-flight count that shutdown waits on.
 */
import type { Middleware } from 'koa';
import type { Logger } from 'pino';

import type { AppContext, AppState, ErrorContext, Phase } from './context.js';
import { ApiCode, ApiError, SHUTTING_DOWN_MESSAGE, errorBody, toApiError } from './errors.js';
import type { Metrics } from './metrics.js';
import { REPLICA_HEADER } from './replica.js';
import { requestId } from './request-id.js';

type AppMiddleware = Middleware<AppState, AppContext>;

/** /health, /health/live, /health/ready: probes, answered even while shutting down. */
export function isHealthPath(path: string): boolean {
  return path === '/health' || path.startsWith('/health/');
}

/**
 * A failure of ours (a bug, a native fault): logged at error with its stack. 503 (load shedding,
 * loading, shutting down, out of device memory) and 501 (a feature the bundle lacks) are expected
 * answers, logged at warn like the 4xx a client causes.
 */
export function isServerFault(status: number): boolean {
  return status >= 500 && status !== 503 && status !== 501;
}

/**
 * Request id and logger; access log and HTTP metrics once the response status is final. Every
 * response names the replica that answered (X-Sam3-Replica) when REPLICA_ID is set.
 */
export function requestContext(logger: Logger, metrics: Metrics, replica?: string): AppMiddleware {
  return async (ctx, next) => {
    const id = requestId(ctx.get('x-request-id'));
    ctx.state.requestId = id;
    ctx.state.log = logger.child({ req_id: id });
    ctx.set('X-Request-Id', id);
    if (replica) ctx.set(REPLICA_HEADER, replica);
    const start = performance.now();
    try {
      await next();
    } finally {
      const seconds = (performance.now() - start) / 1000;
      const route = (ctx as unknown as { _matchedRoute?: string })._matchedRoute ?? 'unmatched';
      const labels = { method: ctx.method, route: String(route), status: String(ctx.status) };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, seconds);
      // Probes and scrapes (every few seconds, whatever they answer) and the Swagger UI's static
      // files would drown the log at info. Failures have their own line (errorResponses).
      const probe = isHealthPath(ctx.path) || ctx.path === '/metrics' || (ctx.status < 400 && ctx.path.startsWith('/docs/'));
      const level = probe ? 'debug' : 'info';
      ctx.state.log[level]({ method: ctx.method, url: ctx.url, status: ctx.status, ms: Math.round(seconds * 10000) / 10 }, 'request');
    }
  };
}

/**
 * Every failure becomes {error: {code, message, details, request_id}}. Server faults are logged at
 * error with the stack (the request id is on every line of ctx.state.log); what a client caused, or
 * a refusal under load, at warn without one.
 */
export function errorResponses(errorContext: () => ErrorContext): AppMiddleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new ApiError(404, ApiCode.NotFound, `no route ${ctx.method} ${ctx.path}; see /docs for the API`);
      }
    } catch (err) {
      const context = errorContext();
      const api = toApiError(err, context);
      if (isServerFault(api.status)) ctx.state.log.error({ err, status: api.status, code: api.code }, 'request failed');
      else ctx.state.log.warn({ status: api.status, code: api.code, message: api.message }, 'request refused');
      ctx.status = api.status;
      for (const [k, v] of Object.entries(api.headers)) ctx.set(k, v);
      if (context.shuttingDown) ctx.set('Connection', 'close');
      ctx.body = errorBody(api, ctx.state.requestId);
    }
  };
}

/** Requests being handled now, and a promise for the moment none is. */
export class InflightRequests {
  private count = 0;
  private drained: (() => void) | undefined;

  get size(): number {
    return this.count;
  }

  /**
   * While shutting down, new work is refused (/health and /metrics still answer). A request is in
   * flight until its response is written (or the client goes away), which is after every
   * middleware has returned: it is counted down on the socket's 'close', not here.
   */
  middleware(phase: () => Phase, retryAfterSeconds: number): AppMiddleware {
    return async (ctx, next) => {
      const ops = ctx.method === 'GET' && (isHealthPath(ctx.path) || ctx.path === '/metrics');
      const stopping = () => phase() === 'shutting_down' || phase() === 'closed';
      if (stopping() && !ops) {
        throw new ApiError(503, ApiCode.ShuttingDown, SHUTTING_DOWN_MESSAGE, {}, { 'Retry-After': String(retryAfterSeconds) });
      }
      this.count++;
      let counted = true;
      ctx.res.once('close', () => {
        if (!counted) return;
        counted = false;
        this.count--;
        if (this.count === 0) this.drained?.();
      });
      await next();
      // A keep-alive client reconnects (to another instance) for its next request.
      if (stopping()) ctx.set('Connection', 'close');
    };
  }

  /** Resolves true when no request is in flight, false after timeoutMs. */
  async drain(timeoutMs: number): Promise<boolean> {
    if (this.count === 0) return true;
    const done = new Promise<void>((resolve) => (this.drained = resolve));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const finished = await Promise.race([done.then(() => true), timeout]);
    clearTimeout(timer);
    return finished;
  }
}
