/** Types shared by the app and its slices (image, video, operations). */
import type { OpenAPIRegistry } from '@asteasolutions/zod-to-openapi';
import type { IncomingMessage } from 'node:http';

import type Router from '@koa/router';
import type { SocketMiddleware } from 'koa-websocket';
import type { ParameterizedContext } from 'koa';
import type { Logger } from 'pino';

import type { ModelPool } from '../devices/workers.js';
import type { BodyReader } from './body.js';
import type { ServerConfig } from './config.js';
import type { Metrics } from './metrics.js';
import type { ReplicaIds } from './replica.js';

export interface AppState {
  requestId: string;
  log: Logger;
}

export type AppContext = ParameterizedContext<AppState>;

export type AppRouter = Router<AppState, AppContext>;

export type Phase = 'loading' | 'ready' | 'failed' | 'shutting_down' | 'closed';

export interface ErrorContext {
  maxBodyBytes: number;
  shuttingDown: boolean;
  retryAfterSeconds: number;
}

/** What slices need from the app; pool() throws a 503 until the model is loaded. */
export interface AppDeps {
  config: ServerConfig;
  /** This replica's ids (REPLICA_ID): makes them and refuses other replicas' (421). */
  replica: ReplicaIds;
  body: BodyReader;
  metrics: Metrics;
  logger: Logger;
  startedAt: number;
  phase(): Phase;
  /** Shutdown has begun: readiness is withdrawn (/health/ready 503), even while requests are still served. */
  draining(): boolean;
  loadError(): Error | undefined;
  pool(): ModelPool;
  errorContext(): ErrorContext;
  openapi(): Record<string, unknown>;
  /** Open video sessions (for /health). */
  activeSessions(): number;
}

/**
 * One part of the API (image, video, operations): its routes and its OpenAPI paths, and what it
 * needs at shutdown. createApp mounts every slice the same way; a new modality is a new slice.
 */
export interface Slice {
  routers: AppRouter[];
  openapi(registry: OpenAPIRegistry): void;
  /** WebSocket endpoints of the slice (upgrades on the same port). */
  websocket?: {
    /** Whether an upgrade request's path is this slice's. */
    matches(pathname: string): boolean;
    /** ws's verifyClient for this slice's paths (may refuse, e.g. while shutting down). */
    verifyClient(info: { req: IncomingMessage }, cb: (ok: boolean, code?: number, message?: string, headers?: Record<string, string>) => void): void;
    middleware: SocketMiddleware;
    maxPayload: number;
  };
  /** Stops work that would keep the server open (streams); called first at shutdown. */
  drain?(): Promise<void>;
  /** Frees what the slice holds on the devices; called after in-flight requests finished, before the models are freed. */
  close?(): Promise<void>;
}
