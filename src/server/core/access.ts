/**
 * Optional API keys (API_KEYS): when set, every request but the public ones must carry one of the
 * keys, as `Authorization: Bearer <key>` or `X-API-Key: <key>`. Public: /health and everything
 * under /health/ (probes carry no secrets), and the API description (/docs, its files,
 * /openapi.json), which is not secret and which a browser must load before it can send a key.
 * WebSocket upgrades are checked before the upgrade (a refused one gets the same 401 JSON body and
 * no socket); a browser, which cannot set headers on a WebSocket, offers the key as a subprotocol
 * `sam3.key.<base64url of the key>` next to `sam3` (the server selects `sam3`), as the Kubernetes
 * API server takes bearer tokens.
 *
 * Keys are compared in constant time over their SHA-256 digests (so neither the key's length nor
 * how many leading characters match shows in the timing), against every configured key without
 * stopping at a match. A refusal never says which keys exist: it is the same 401 for a missing and
 * a wrong key, apart from the message saying which of the two it was.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

import type { Middleware } from 'koa';
import { z } from 'zod';

import { ApiCode, ApiError, errorBody } from './errors.js';
import { requestId } from './request-id.js';

/** Visible ASCII without the comma (the list separator): a key must travel in an HTTP header. */
const KEY = /^[\x21-\x2b\x2d-\x7e]{16,512}$/;

/** API_KEYS: a comma-separated list of keys (16 to 512 visible ASCII characters each, no commas). */
export const apiKeysSchema = z
  .string()
  .transform((v) => v.split(',').map((k) => k.trim()).filter((k) => k !== ''))
  .refine((keys) => keys.every((k) => KEY.test(k)), {
    message: 'must be a comma-separated list of keys, each 16 to 512 visible ASCII characters without spaces or commas (e.g. from `openssl rand -hex 32`)',
  });

/** The subprotocol a WebSocket client selects, and the prefix of the one that carries its key. */
export const WS_PROTOCOL = 'sam3';
export const WS_KEY_PROTOCOL_PREFIX = 'sam3.key.';

const digest = (key: string) => createHash('sha256').update(key, 'utf8').digest();

/** Paths anyone may read: health probes and the API description. */
export function isPublicPath(pathname: string): boolean {
  return pathname === '/health' || pathname.startsWith('/health/') || pathname === '/openapi.json' || pathname === '/docs' || pathname.startsWith('/docs/');
}

export class ApiKeys {
  private readonly digests: Buffer[];

  constructor(keys: readonly string[]) {
    this.digests = [...new Set(keys)].map(digest);
  }

  get enabled(): boolean {
    return this.digests.length > 0;
  }

  /** Whether `presented` is one of the keys; compares against every key in constant time. */
  matches(presented: string): boolean {
    const got = digest(presented);
    let ok = false;
    for (const d of this.digests) ok = timingSafeEqual(d, got) || ok;
    return ok;
  }

  /** The refusal for a request with these headers, or undefined when it may pass. */
  refusal(headers: IncomingMessage['headers']): ApiError | undefined {
    if (!this.enabled) return undefined;
    const presented = presentedKey(headers);
    if (presented !== undefined && this.matches(presented)) return undefined;
    const how = "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>' (WebSocket clients that cannot set headers: the subprotocol 'sam3.key.<base64url of the key>' next to 'sam3')";
    const message = presented === undefined ? `this server requires an API key: ${how}` : `the API key is not valid; ${how} with a key this server's operator gave you`;
    const challenge = presented === undefined ? 'Bearer realm="sam3"' : 'Bearer realm="sam3", error="invalid_token"';
    return new ApiError(401, ApiCode.Unauthorized, message, {}, { 'WWW-Authenticate': challenge });
  }

  /** Koa middleware: 401 for a request to a non-public path without a valid key. */
  middleware(): Middleware {
    return async (ctx, next) => {
      if (this.enabled && !isPublicPath(ctx.path)) {
        const refused = this.refusal(ctx.req.headers);
        if (refused) throw refused;
      }
      await next();
    };
  }

  /**
   * For ws's verifyClient: undefined to accept the upgrade, else the status, JSON body and headers
   * of the refusal (written by ws before any socket exists).
   */
  upgradeRefusal(req: IncomingMessage): { status: number; body: string; headers: Record<string, string> } | undefined {
    const refused = this.refusal(req.headers);
    if (!refused) return undefined;
    const body = JSON.stringify(errorBody(refused, requestId(headerValue(req.headers['x-request-id']))));
    return { status: refused.status, body, headers: { ...refused.headers, 'Content-Type': 'application/json; charset=utf-8' } };
  }
}

/**
 * ws's handleProtocols: selects `sam3` when the client offered it (a client offering the key
 * subprotocol must offer `sam3` too, or a browser refuses the answer); never selects the key.
 */
export function selectProtocol(protocols: Set<string>): string | false {
  if (protocols.has(WS_PROTOCOL)) return WS_PROTOCOL;
  for (const p of protocols) if (!p.startsWith(WS_KEY_PROTOCOL_PREFIX)) return p;
  return false;
}

function headerValue(v: string | string[] | undefined): string {
  return Array.isArray(v) ? (v[0] ?? '') : (v ?? '');
}

/** The key a request presents: Authorization: Bearer, X-API-Key, or the WebSocket key subprotocol. */
function presentedKey(headers: IncomingMessage['headers']): string | undefined {
  const auth = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(headerValue(headers.authorization));
  if (auth) return auth[1];
  const header = headerValue(headers['x-api-key']).trim();
  if (header !== '') return header;
  for (const p of headerValue(headers['sec-websocket-protocol']).split(',')) {
    const t = p.trim();
    if (t.startsWith(WS_KEY_PROTOCOL_PREFIX)) return Buffer.from(t.slice(WS_KEY_PROTOCOL_PREFIX.length), 'base64url').toString('utf8');
  }
  return undefined;
}
