/** Types shared by the app and its routes. */
import type { ParameterizedContext } from 'koa';
import type { Logger } from 'pino';

import type { BodyReader } from './body.js';
import type { ServerConfig } from './config.js';
import type { ModelPool } from './engines.js';
import type { InferenceService } from './inference.js';
import type { Metrics } from './metrics.js';
import type { Schemas } from './schemas.js';

export interface AppState {
  requestId: string;
  log: Logger;
}

export type AppContext = ParameterizedContext<AppState>;

export type Phase = 'loading' | 'ready' | 'failed' | 'shutting_down' | 'closed';

/** What routes need from the app; service() and pool() throw a 503 until the model is loaded. */
export interface AppDeps {
  config: ServerConfig;
  schemas: Schemas;
  body: BodyReader;
  metrics: Metrics;
  startedAt: number;
  phase(): Phase;
  loadError(): Error | undefined;
  bundleDir(): string | undefined;
  service(): InferenceService;
  pool(): ModelPool;
  errorContext(): { maxBodyBytes: number; shuttingDown: boolean; retryAfterSeconds: number };
  openapi(): Record<string, unknown>;
  /** Open video sessions (for /health). */
  activeSessions(): number;
}
