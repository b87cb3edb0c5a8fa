/**
 * Cross-origin requests from browsers (CORS_ORIGINS; off by default, so a browser page on another
 * origin cannot read the API's answers). `*` lets any origin in; a comma-separated list of origins
 * (`https://tool.example.com,http://localhost:5173`) lets those in, each answered with its own
 * origin. @koa/cors does the protocol: preflights (OPTIONS with Access-Control-Request-Method) are
 * answered 204 before authentication, since a browser sends no credentials on them; the headers a
 * client needs (Authorization, X-API-Key, X-Request-Id) may be sent, and the ones it reads
 * (X-Request-Id, Retry-After, the replica headers) are exposed. No cookies are used, so
 * credentials are not allowed.
 */
import cors from '@koa/cors';
import type { Middleware } from 'koa';
import { z } from 'zod';

import { OWNER_HEADER, REPLICA_HEADER } from './replica.js';

/** '*' or the allowed origins (scheme://host[:port], as browsers send them in Origin). */
export type CorsOrigins = '*' | readonly string[];

function isOrigin(o: string): boolean {
  try {
    const u = new URL(o);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === o;
  } catch {
    return false;
  }
}

/** CORS_ORIGINS: '*' or a comma-separated list of origins. */
export const corsOriginsSchema = z
  .string()
  .transform((v): CorsOrigins => (v.trim() === '*' ? '*' : v.split(',').map((o) => o.trim().replace(/\/$/, '')).filter((o) => o !== '')))
  .refine((v) => v === '*' || v.every(isOrigin), {
    message: "must be '*' or a comma-separated list of origins such as https://tool.example.com,http://localhost:5173 (scheme, host and port only; no path)",
  });

/** Max-Age of a preflight answer, seconds: browsers cache it (and cap it themselves). */
const PREFLIGHT_MAX_AGE = 600;

/** The CORS middleware, or undefined when CORS_ORIGINS is unset. */
export function corsMiddleware(origins: CorsOrigins | undefined): Middleware | undefined {
  if (origins === undefined) return undefined;
  const allowed = origins === '*' ? undefined : new Set(origins);
  return cors({
    origin: (ctx) => {
      if (!allowed) return '*';
      const origin = ctx.get('Origin');
      return allowed.has(origin) ? origin : '';
    },
    allowMethods: ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS'],
    allowHeaders: ['Authorization', 'X-API-Key', 'Content-Type', 'Content-Encoding', 'X-Request-Id'],
    exposeHeaders: ['X-Request-Id', 'Retry-After', REPLICA_HEADER, OWNER_HEADER, 'WWW-Authenticate'],
    maxAge: PREFLIGHT_MAX_AGE,
    credentials: false,
  });
}
