/**
 * WS /api/v1/video/ws/propagate/{session_id} (koa-websocket): the client sends the propagation
 * options as a JSON text message and receives {type: "frame", frame_index, objects} for each frame
 * as the tracker produces it, then {type: "complete", total_frames, frames_processed,
 * processing_time_ms}: total_frames is the video's length (as in video_info and the session's
 * status), frames_processed the frames this run sent. The socket stays open for another run.
 * {type: "cancel"} is always answered: a running propagation stops and answers {type: "cancelled",
 * was_running: true, total_frames, frames_processed, processing_time_ms}; with nothing running the
 * answer is {type: "cancelled", was_running: false} at once (a cancel that arrives as a run sends
 * its last frame may get that run's "complete" first, then this).
 *
 * Errors are {type: "error", code, message, details} with the HTTP API's codes. Bad messages
 * (binary, not JSON, bad options, a second run while one is going) get an error and the socket
 * stays open; an unknown session gets an error and close code 4404, a session closed during the
 * run 4410, shutdown 1001.
 *
 * Backpressure: a frame is sent at once while the socket's send buffer holds less than
 * HIGH_WATER_BYTES; beyond that the run waits until the frame has been written out, which pauses
 * the tracker instead of queueing frames in memory. A client that disconnects cancels the run.
 */
import type { IncomingMessage } from 'node:http';

import type { SocketMiddleware } from 'koa-websocket';
import type { Logger } from 'pino';
import WebSocket from 'ws';

import { refuseUpgrade } from '../core/connections.js';
import { ApiCode, ApiError, toApiError, validationError } from '../core/errors.js';
import type { AppDeps } from '../core/context.js';
import { requestId } from '../core/request-id.js';
import { issuesOf } from '../core/validate.js';
import { checkFrameIndex } from '../../index.js';
import { frameBody, propagateOptions, requireObjects } from './routes.js';
import type { PropagateFields, VideoSchemas } from './schemas.js';
import { type SessionManager, sessionNotFound } from './sessions.js';

export const SOCKET_PATH = /^\/api\/v1\/video\/ws\/propagate\/([^/]+)$/;

/** Largest message a client may send (propagation options are tiny). */
export const MAX_MESSAGE_BYTES = 64 * 1024;

export const HIGH_WATER_BYTES = 1024 * 1024;

export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  SessionNotFound: 4404,
  /** The session is another replica's (the error names it); connect through a proxy that routes by the id. */
  WrongReplica: 4421,
  SessionClosed: 4410,
} as const;

interface Run {
  controller: AbortController;
  done: Promise<void>;
}

/** One client socket and its running propagation (exported for tests). */
export class Connection {
  run: Run | undefined;

  constructor(
    readonly ws: WebSocket,
    readonly sessionId: string,
    readonly log: Logger,
  ) {}

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Sends one message, waiting for it to be written out when the send buffer is full. */
  async send(message: Record<string, unknown>): Promise<void> {
    if (!this.open) return;
    const data = JSON.stringify(message);
    if (this.ws.bufferedAmount + data.length <= HIGH_WATER_BYTES) {
      this.ws.send(data);
      return;
    }
    await new Promise<void>((resolve) => this.ws.send(data, () => resolve()));
  }

  error(err: ApiError): Promise<void> {
    return this.send({ type: 'error', code: err.code, message: err.message, details: err.details });
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code, reason.slice(0, 120));
  }
}

export class PropagationSockets {
  private readonly connections = new Set<Connection>();
  private shuttingDown = false;

  constructor(
    private readonly deps: AppDeps,
    private readonly schemas: VideoSchemas,
    private readonly manager: SessionManager,
    private readonly logger: Logger,
  ) {}

  get size(): number {
    return this.connections.size;
  }

  /** ws's verifyClient: refuses the upgrade of other paths (404) and during shutdown (503). */
  readonly verifyClient = (info: { req: IncomingMessage }, cb: (ok: boolean, code?: number, message?: string, headers?: Record<string, string>) => void): void => {
    const pathname = new URL(info.req.url ?? '/', 'http://localhost').pathname;
    if (!SOCKET_PATH.test(pathname)) refuseUpgrade(cb, 404, ApiCode.NotFound, `no WebSocket endpoint at ${pathname.slice(0, 200)}; see /docs`);
    else if (this.shuttingDown) refuseUpgrade(cb, 503, ApiCode.ShuttingDown, 'the server is shutting down; reconnect to another instance', { 'Retry-After': '1' });
    else cb(true);
  };

  /** koa-websocket middleware: one call per accepted connection. */
  readonly middleware: SocketMiddleware = async (ctx) => {
    const ws = ctx.websocket;
    const match = SOCKET_PATH.exec(ctx.path);
    let sessionId = '';
    try {
      sessionId = decodeURIComponent(match?.[1] ?? '');
    } catch {
      // a bad escape: no such session
    }
    const log = this.logger.child({ req_id: requestId(ctx.get('x-request-id')), ws: ctx.path });
    const conn = new Connection(ws, sessionId, log);
    this.connections.add(conn);
    log.info({ session_id: sessionId }, 'websocket opened');
    ws.on('close', (code: number) => {
      this.connections.delete(conn);
      conn.run?.controller.abort(new Error('client disconnected'));
      log.info({ session_id: sessionId, code }, 'websocket closed');
    });
    ws.on('error', (err: Error) => log.debug({ err }, 'websocket error'));
    ws.on('message', (data: WebSocket.RawData, isBinary: boolean) => {
      this.onMessage(conn, data, isBinary).catch((err: unknown) => log.error({ err }, 'websocket message handling failed'));
    });
    try {
      this.deps.replica.own(sessionId, 'session_id');
    } catch (err) {
      await conn.error(toApiError(err, this.deps.errorContext()));
      conn.close(CloseCode.WrongReplica, 'session of another replica');
      return;
    }
    if (!this.manager.has(sessionId)) {
      await conn.error(toApiError(sessionNotFound(sessionId), this.deps.errorContext()));
      conn.close(CloseCode.SessionNotFound, 'unknown session');
    }
  };

  /** Shutdown: cancels every run, tells each client, closes the sockets (terminating stragglers). */
  async shutdown(graceMs = 1000): Promise<void> {
    this.shuttingDown = true;
    const conns = [...this.connections];
    for (const conn of conns) conn.run?.controller.abort(new Error('shutting down'));
    await Promise.allSettled(conns.map((c) => c.run?.done));
    for (const conn of conns) {
      await conn.error(new ApiError(503, ApiCode.ShuttingDown, 'the server is shutting down; reconnect to another instance')).catch(() => undefined);
      conn.close(CloseCode.GoingAway, 'server shutting down');
    }
    if (conns.length === 0) return;
    const deadline = Date.now() + graceMs;
    while (this.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const conn of this.connections) conn.ws.terminate();
  }

  private async onMessage(conn: Connection, data: WebSocket.RawData, isBinary: boolean): Promise<void> {
    if (isBinary) {
      await conn.error(validationError('binary messages are not accepted; send the propagation options as a JSON text message, e.g. {"direction": "forward"}'));
      return;
    }
    const text = (Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)).toString('utf8');
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch (err) {
      await conn.error(new ApiError(400, ApiCode.InvalidJson, `the message is not valid JSON (${(err as Error).message}); send the propagation options as a JSON object, e.g. {"direction": "forward"}`));
      return;
    }
    if (message === null || typeof message !== 'object' || Array.isArray(message)) {
      await conn.error(validationError('the message must be a JSON object: the propagation options, e.g. {"direction": "forward"}, or {"type": "cancel"}'));
      return;
    }
    const type = (message as { type?: unknown }).type;
    if (type === 'cancel') {
      // Idempotent: a cancel racing the end of a run is not an error. A run answers it when it stops.
      if (conn.run && !conn.run.controller.signal.aborted) conn.run.controller.abort(new Error('cancelled by the client'));
      else await conn.send({ type: 'cancelled', was_running: false });
      return;
    }
    if (conn.run) {
      await conn.error(new ApiError(409, ApiCode.SessionBusy, 'a propagation is already running on this socket; wait for {"type": "complete"} or send {"type": "cancel"} first', { session_id: conn.sessionId }));
      return;
    }
    const parsed = this.schemas.PropagateSocketRequest.safeParse(message);
    if (!parsed.success) {
      const issues = issuesOf(parsed.error, message);
      const first = issues[0]!;
      await conn.error(validationError(`${first.path}: ${first.message}`, { issues }));
      return;
    }
    const controller = new AbortController();
    const run: Run = { controller, done: Promise.resolve() };
    conn.run = run;
    run.done = this.propagate(conn, parsed.data, controller).finally(() => {
      if (conn.run === run) conn.run = undefined;
    });
    await run.done;
  }

  private async propagate(conn: Connection, options: PropagateFields, controller: AbortController): Promise<void> {
    const start = performance.now();
    try {
      const s = this.manager.get(conn.sessionId);
      if (options.start_frame_index !== undefined) checkFrameIndex(options.start_frame_index, s.info.totalFrames, 'start_frame_index');
      requireObjects(s);
      const summary = await this.manager.propagate(s, propagateOptions(options), controller.signal, async (frame) => conn.send({ type: 'frame', ...(await frameBody(frame, options.mask_format)) }));
      const ms = Math.round((performance.now() - start) * 10) / 10;
      const counts = { total_frames: s.info.totalFrames, frames_processed: summary.frames, processing_time_ms: ms };
      if (summary.cancelled) {
        conn.log.info({ session_id: s.id, frames: summary.frames, reason: String((controller.signal.reason as Error | undefined)?.message ?? '') }, 'propagation cancelled');
        await conn.send({ type: 'cancelled', was_running: true, ...counts });
      } else {
        await conn.send({ type: 'complete', ...counts });
      }
    } catch (err) {
      const api = toApiError(err, this.deps.errorContext());
      if (api.status >= 500) conn.log.error({ err, code: api.code }, 'propagation failed');
      else conn.log.info({ code: api.code, message: api.message }, 'propagation refused');
      await conn.error(api).catch(() => undefined);
      if (api.code === ApiCode.SessionNotFound) conn.close(CloseCode.SessionNotFound, 'unknown session');
      else if (api.code === ApiCode.SessionClosed) conn.close(CloseCode.SessionClosed, 'session closed');
    }
  }
}
