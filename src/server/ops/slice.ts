/** The operations slice: /health, /models/info, /metrics, /openapi.json and the Swagger UI. */
import type { AppDeps, Slice } from '../core/context.js';
import { docsRoutes } from './docs.js';
import { registerOpsPaths } from './openapi.js';
import { healthRoutes } from './routes.js';

export function opsSlice(deps: AppDeps): Slice {
  return {
    routers: [healthRoutes(deps), docsRoutes(deps)],
    openapi: registerOpsPaths,
  };
}
