/**
 * What happens on a connection before (or instead of) a request reaching Koa:
 * - malformed HTTP (a bad chunk size, an invalid method, oversized headers) that Node's parser
 *   refuses is answered with the API's JSON error body and the connection closed, logged at debug
 *   (a client's mistake, and a scanner can send thousands);
 * - a client that goes silent while the server waits on it is not held until its own timeout:
 *   after CLIENT_IDLE_TIMEOUT_MS with no bytes, a connection that started a request but never
 *   finished its headers (even a bare CRLF) gets a 408, one that sent nothing or sits idle
 *   between keep-alive requests is closed, and one whose body stalls (a chunk size of
 *   ffffffffffffffff, a multipart upload cut off mid-file) is answered 408 by the body reader
 *   (core/body.ts) and closed here one period later if nothing did. A request the server is still
 *   working on (a long propagation) is never cut;
 * - WebSocket upgrades refused (no such path, shutting down, a bad handshake) get the same JSON
 *   error body instead of ws's text/html one.
 */
import type { Server, ServerResponse } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';

import type { Logger } from 'pino';
import type { WebSocketServer } from 'ws';

import { ApiCode } from './errors.js';
import { requestId } from './request-id.js';

const SERVED = Symbol('sam3.served');
const STALLED_AT = Symbol('sam3.stalledAt');

interface TrackedSocket extends Socket {
  [SERVED]?: boolean;
  [STALLED_AT]?: number;
  /** Node's response in progress on this socket (not public API, stable since Node 0.x). */
  _httpMessage?: ServerResponse | null;
}

/** A complete HTTP/1.1 response with the API's error body, for writing on a bare socket. */
export function rawErrorResponse(status: number, code: string, message: string): string {
  const body = JSON.stringify({ error: { code, message, details: {}, request_id: requestId(undefined) } });
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;
}

/** ws's verifyClient callback. */
export type UpgradeCallback = (ok: boolean, status?: number, message?: string, headers?: Record<string, string>) => void;

/** Refuses a WebSocket upgrade (in verifyClient) with the API's JSON error body. */
export function refuseUpgrade(cb: UpgradeCallback, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error: { code, message, details: {}, request_id: requestId(undefined) } });
  cb(false, status, body, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
}

/** Handshakes ws itself refuses (a POST upgrade, a bad Sec-WebSocket-Key or version): JSON 400 / 405. */
export function guardUpgrades(wss: WebSocketServer, logger: Logger): void {
  wss.on('wsClientError', (err: Error, socket: Socket, req: { method?: string }) => {
    logger.debug({ reason: err.message }, 'WebSocket handshake refused');
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    if (req.method !== 'GET') {
      const body = rawErrorResponse(405, ApiCode.MethodNotAllowed, `a WebSocket handshake is a GET, not ${String(req.method).slice(0, 20)}`);
      answer(socket, body.replace('\r\n\r\n', '\r\nAllow: GET\r\n\r\n'));
      return;
    }
    answer(socket, rawErrorResponse(400, ApiCode.BadRequest, `WebSocket handshake refused: ${err.message}; connect with a WebSocket client (RFC 6455, version 13)`));
  });
}

function answer(socket: Socket, response: string): void {
  socket.end(response);
  // A client that does not read its answer must not keep the socket.
  setTimeout(() => socket.destroy(), 2000).unref();
}

function refusal(err: NodeJS.ErrnoException): { status: number; code: string; message: string } {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, code: ApiCode.HeadersTooLarge, message: 'the request headers are larger than the server accepts (16 KB); send fewer or shorter headers' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, code: ApiCode.RequestTimeout, message: 'the request was not received in time; send it again without pausing' };
    default: {
      const reason = (err as { reason?: unknown }).reason;
      const why = typeof reason === 'string' && reason ? reason : err.message;
      return { status: 400, code: ApiCode.BadRequest, message: `malformed HTTP request (${why}); send a valid HTTP/1.1 request` };
    }
  }
}

export function guardConnections(server: Server, logger: Logger, idleTimeoutMs: number): void {
  // Every socket times out after this long without bytes; Node then emits 'timeout' here and,
  // since this listener handles it, leaves the decision to us.
  server.timeout = idleTimeoutMs;
  server.on('request', (req) => {
    (req.socket as TrackedSocket)[SERVED] = true;
  });

  server.on('clientError', (err: NodeJS.ErrnoException, socket: TrackedSocket) => {
    const res = socket._httpMessage;
    if (err.code === 'ECONNRESET' || !socket.writable || res?.headersSent) {
      socket.destroy();
      return;
    }
    const r = refusal(err);
    logger.debug({ code: err.code, status: r.status, bytes: (err as { bytesParsed?: unknown }).bytesParsed }, 'malformed HTTP refused');
    answer(socket, rawErrorResponse(r.status, r.code, r.message));
  });

  server.on('timeout', (socket: TrackedSocket) => {
    const res = socket._httpMessage;
    if (!res) {
      if (socket[SERVED] || socket.bytesRead === 0) {
        socket.destroy();
        return;
      }
      logger.debug({ bytes: socket.bytesRead }, 'request headers incomplete after CLIENT_IDLE_TIMEOUT_MS; answered 408');
      answer(socket, rawErrorResponse(408, ApiCode.RequestTimeout, `the request headers were not complete after ${idleTimeoutMs / 1000} s without data; send the whole request without pausing`));
      return;
    }
    const req = (res as ServerResponse & { req?: { complete?: boolean } }).req;
    if (!req || req.complete) return; // the server is working on a request it has whole
    // The body stalls: the body reader answers 408 (JSON and multipart); a route that reads no body does not.
    if (socket[STALLED_AT] === socket.bytesRead) {
      logger.debug({ bytes: socket.bytesRead }, 'request body stalled; connection closed');
      socket.destroy();
    } else {
      socket[STALLED_AT] = socket.bytesRead;
      // Node emits 'timeout' once per setTimeout: arm it again, or the next period never comes.
      socket.setTimeout(idleTimeoutMs);
    }
  });
}
