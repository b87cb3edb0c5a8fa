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
      // 503s are load shedding or lifecycle (loading, shutting down), not faults; successful
      // probes and scrapes would drown the log at info.
      const probe = ctx.status < 400 && (ctx.path === '/health' || ctx.path === '/metrics' || ctx.path.startsWith('/docs/'));
      const level = ctx.status >= 500 && ctx.status !== 503 ? 'error' : probe ? 'debug' : 'info';
      ctx.state.log[level]({ method: ctx.method, url: ctx.url, status: ctx.status, ms: Math.round(seconds * 10000) / 10 }, 'request');
    }
  };
}

/** Every failure becomes {error: {code, message, details, request_id}}; ours are logged with the stack. */
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
      if (api.status >= 500) ctx.state.log.error({ err, code: api.code }, 'request failed');
      else ctx.state.log.info({ code: api.code, message: api.message }, 'request refused');
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
      const ops = ctx.method === 'GET' && (ctx.path === '/health' || ctx.path === '/metrics');
      const p = phase();
      if ((p === 'shutting_down' || p === 'closed') && !ops) {
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
