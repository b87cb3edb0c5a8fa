/** The image slice: /api/v1/image/* routes, their schemas and OpenAPI paths, over the device pool. */
import type { AppDeps, Slice } from '../core/context.js';
import type { DeviceMetrics } from '../devices/metrics.js';
import type { ModelPool } from '../devices/workers.js';
import { batchRoutes } from './batch.js';
import { InferenceService } from './inference.js';
import { MaskInputStore, interactiveRoutes } from './interactive.js';
import { makeInteractiveSchemas } from './interactive-schemas.js';
import { registerImagePaths } from './openapi.js';
import { imageRoutes } from './routes.js';
import { makeImageSchemas } from './schemas.js';

export function imageSlice(deps: AppDeps, metrics: DeviceMetrics): Slice {
  const { config } = deps;
  const schemas = makeImageSchemas({ maxPrompts: config.limits.maxPrompts, maxBatchImages: config.limits.maxBatchImages, defaultThreshold: config.confidenceThreshold });
  const interactiveSchemas = makeInteractiveSchemas({ maxPrompts: config.limits.maxPrompts });
  let service: InferenceService | undefined;
  let store: MaskInputStore | undefined;
  let servedPool: ModelPool | undefined;
  // One service (and one store of mask_input handles) per loaded pool (503 until there is one).
  const serviceOf = (): InferenceService => {
    const pool = deps.pool();
    if (servedPool !== pool || !service) {
      servedPool = pool;
      service = new InferenceService(pool, config, metrics, deps.replica);
      store?.close();
      store = new MaskInputStore(config);
    }
    return service;
  };
  const storeOf = (): MaskInputStore => {
    serviceOf();
    return store!;
  };
  return {
    routers: [imageRoutes(deps, schemas, serviceOf), batchRoutes(deps, schemas, serviceOf), interactiveRoutes(deps, interactiveSchemas, serviceOf, storeOf)],
    openapi: (registry) => registerImagePaths(registry, schemas, interactiveSchemas),
    close: async () => store?.close(),
  };
}
