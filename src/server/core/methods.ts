/**
 * Methods a path does not take. @koa/router's allowedMethods throws a bare 501 for any method it
 * does not implement (LINK, PURGE, ...), even on paths no route has, and its 405 carries no Allow
 * header when it throws; this one middleware, mounted before the routers, answers instead:
 * a path some route matched but not with this method is a 405 naming the methods it takes (in
 * Allow and in details.allowed, RFC 9110 15.5.6), OPTIONS lists them, and a path no route has
 * stays a 404.
 */
import type { Middleware } from 'koa';

import type { AppContext, AppState } from './context.js';
import { ApiCode, ApiError } from './errors.js';

interface MatchedLayer {
  methods: string[];
}

export function methodNotAllowed(): Middleware<AppState, AppContext> {
  return async (ctx, next) => {
    await next();
    if (ctx.status !== 404 || ctx.body !== undefined) return;
    const matched = (ctx as unknown as { matched?: MatchedLayer[] }).matched ?? [];
    const allowed = [...new Set(matched.flatMap((layer) => layer.methods))];
    if (allowed.length === 0) return;
    // Router-level middleware has no methods; a matched route lists GET with HEAD.
    const order = ['HEAD', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
    allowed.sort((a, b) => order.indexOf(a) - order.indexOf(b));
    const allow = allowed.join(', ');
    if (ctx.method === 'OPTIONS') {
      ctx.status = 200;
      ctx.body = '';
      ctx.set('Allow', allow);
      return;
    }
    const method = ctx.method.length > 20 ? `${ctx.method.slice(0, 20)}...` : ctx.method;
    throw new ApiError(405, ApiCode.MethodNotAllowed, `${method} is not a method of ${ctx.path}; use ${allow}`, { method, allowed }, { Allow: allow });
  };
}
