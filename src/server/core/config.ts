/**
 * Server configuration: environment variables (and a .env file, which the environment overrides),
 * validated by zod once at start. A bad value stops the server with a message naming the key, so a
 * typo in a deployment fails loudly instead of running with a silent default.
 * Every key is documented in .env.example.
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { parse as parseDotenv } from 'dotenv';
import { z } from 'zod';

import type { ConceptConfig } from '../../index.js';
import { apiKeysSchema } from './access.js';
import { type CorsOrigins, corsOriginsSchema } from './cors.js';
import { REPLICA_NAME } from './replica.js';

/** The package root: src/server/core/ and dist/server/core/ are both three levels below it. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);

const bool = z
  .string()
  .trim()
  .toLowerCase()
  .refine((v) => TRUE.has(v) || FALSE.has(v), { message: 'must be true or false (also accepted: 1/0, yes/no, on/off)' })
  .transform((v) => TRUE.has(v));

function num(opts: { int?: boolean; min?: number; max?: number; positive?: boolean }) {
  return z
    .string()
    .trim()
    .transform((v, ctx) => {
      const n = Number(v);
      const kind = opts.int ? 'an integer' : 'a number';
      const fail = (what: string) => {
        ctx.addIssue({ code: 'custom', message: `must be ${kind}${what}, got '${v}'` });
        return z.NEVER;
      };
      if (v === '' || !Number.isFinite(n)) return fail('');
      if (opts.int && !Number.isInteger(n)) return fail('');
      if (opts.positive && n <= 0) return fail(' > 0');
      if (opts.min !== undefined && n < opts.min) return fail(` >= ${opts.min}`);
      if (opts.max !== undefined && n > opts.max) return fail(` <= ${opts.max}`);
      return n;
    });
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const DEVICE = /^(cpu|cuda(:\d+)?)$/;

/** Keys whose values a configuration error must not print. */
const SECRET_KEYS = new Set(['API_KEYS']);

/** Raw keys as strings, with defaults; transformed into typed values. */
const envSchema = z.object({
  SAM3_CHECKPOINT: z.string().trim().min(1, 'must name a model bundle folder, a Hugging Face checkpoint folder or a hub id').default('models/demo'),
  SAM3_EXPORT_DIR: z.string().trim().min(1).default('.cache/bundles'),
  SAM3_EXPORT_DTYPE: z.enum(['auto', 'float32', 'bfloat16', 'float16'], { message: 'must be auto, float32, bfloat16 or float16' }).default('auto'),
  SAM3_PYTHON: z.string().trim().min(1).optional(),
  SAM3_VERIFY_BUNDLE: bool.default(true),
  IMAGE_MODEL_DEVICE: z
    .string()
    .trim()
    .toLowerCase()
    .refine((v) => v === 'auto' || DEVICE.test(v), { message: "must be 'auto', 'cpu', 'cuda' or 'cuda:N'" })
    .optional(),
  DEVICES: z
    .string()
    .trim()
    .toLowerCase()
    .refine((v) => v.split(',').every((d) => DEVICE.test(d.trim())), { message: "must be a comma-separated list of 'cpu', 'cuda' or 'cuda:N', e.g. 'cuda:0,cuda:1'" })
    .optional(),
  ENGINE_THREADS: num({ int: true, min: 1 }).optional(),
  IMAGE_MODEL_CONFIDENCE_THRESHOLD: num({ min: 0, max: 1 }).default(0.5),
  IMAGE_MODEL_RESOLUTION: num({ int: true, positive: true }).optional(),
  IMAGE_MODEL_WARMUP: bool.default(true),
  SERVER_HOST: z.string().trim().min(1).default('0.0.0.0'),
  REPLICA_ID: z
    .string()
    .trim()
    .regex(REPLICA_NAME, { message: 'must be a DNS label (a-z, 0-9 and -, at most 63 characters, e.g. the pod name sam3-0)' })
    .optional(),
  SERVER_PORT: num({ int: true, min: 0, max: 65535 }).default(8000),
  LOG_LEVEL: z
    .string()
    .trim()
    .toLowerCase()
    .pipe(z.enum(LOG_LEVELS, { message: `must be one of ${LOG_LEVELS.join(', ')}` }))
    .default('info'),
  ENABLE_FEATURE_CACHE: bool.default(true),
  FEATURE_CACHE_TTL_SECONDS: num({ positive: true }).default(600),
  FEATURE_CACHE_MAX_MB: num({ positive: true }).default(2048),
  FEATURE_CACHE_MAX_ENTRIES: num({ int: true, min: 1 }).default(256),
  TEXT_CACHE_ENTRIES: num({ int: true, min: 1 }).default(1024),
  MAX_BATCH_SIZE: num({ int: true, min: 1, max: 256 }).optional(),
  HEAD_BATCH_SIZE: num({ int: true, min: 1, max: 256 }).optional(),
  BATCH_WAIT_MS: num({ min: 0, max: 10_000 }).default(5),
  MAX_QUEUE_SIZE: num({ int: true, min: 1 }).default(64),
  RETRY_AFTER_SECONDS: num({ int: true, min: 1 }).default(1),
  MAX_BODY_MB: num({ positive: true }).default(25),
  MAX_IMAGE_PIXELS: num({ int: true, positive: true }).default(40_000_000),
  MAX_PROMPTS_PER_REQUEST: num({ int: true, min: 1, max: 1024 }).default(32),
  MAX_IMAGES_PER_BATCH: num({ int: true, min: 1, max: 1024 }).default(16),
  SHUTDOWN_TIMEOUT_MS: num({ int: true, min: 0 }).default(30_000),
  SHUTDOWN_DELAY_MS: num({ int: true, min: 0 }).default(0),
  HEAP_TRIM_INTERVAL_MS: num({ int: true, min: 0 }).default(5000),
  HEAP_TRIM_MIN_FREE_MB: num({ min: 0 }).default(64),
  CLIENT_IDLE_TIMEOUT_MS: num({ int: true, min: 100 }).default(15_000),
  MEDIA_ROOT: z.string().trim().min(1).default('./media'),
  MAX_SESSIONS: num({ int: true, min: 1 }).default(8),
  SESSION_IDLE_TIMEOUT_SECONDS: num({ positive: true }).default(600),
  VIDEO_FRAME_CACHE_MB: num({ positive: true }).default(512),
  MAX_UPLOAD_MB: num({ positive: true }).default(500),
  UPLOAD_TTL_SECONDS: num({ min: 0 }).default(86_400),
  CORS_ORIGINS: corsOriginsSchema.optional(),
  API_KEYS: apiKeysSchema.optional(),
  // Concept tracking: unset keys keep the bundle's Sam3VideoConfig value (manifest video.concept).
  VIDEO_DETECTION_THRESHOLD: num({ min: 0, max: 1 }).optional(),
  VIDEO_NEW_OBJECT_THRESHOLD: num({ min: 0, max: 1 }).optional(),
  VIDEO_NMS_IOU_THRESHOLD: num({ min: 0, max: 1 }).optional(),
  VIDEO_ASSOC_IOU_THRESHOLD: num({ min: 0, max: 1 }).optional(),
  VIDEO_HOTSTART_DELAY: num({ int: true, min: 0 }).optional(),
  VIDEO_MAX_OBJECTS: num({ int: true, min: 1 }).optional(),
  VIDEO_FILL_HOLE_AREA: num({ int: true, min: 0 }).optional(),
});

/** The concept-tracking keys and the Sam3VideoConfig field each overrides. */
const CONCEPT_KEYS = {
  VIDEO_DETECTION_THRESHOLD: 'score_threshold_detection',
  VIDEO_NEW_OBJECT_THRESHOLD: 'new_det_thresh',
  VIDEO_NMS_IOU_THRESHOLD: 'det_nms_thresh',
  VIDEO_ASSOC_IOU_THRESHOLD: 'assoc_iou_thresh',
  VIDEO_HOTSTART_DELAY: 'hotstart_delay',
  VIDEO_MAX_OBJECTS: 'max_num_objects',
  VIDEO_FILL_HOLE_AREA: 'fill_hole_area',
} as const;

export interface ServerConfig {
  /** SAM3_CHECKPOINT verbatim: a path (relative to `root`) or a Hugging Face hub id. */
  checkpoint: string;
  /** Relative paths are resolved against this folder (the package root). */
  root: string;
  exportDir: string;
  /** dtype of an export; undefined (auto): bfloat16 on CUDA, float32 on the CPU. */
  exportDtype: 'float32' | 'bfloat16' | 'float16' | undefined;
  python: string;
  verifyBundle: boolean;
  /** Devices to run one engine each on; undefined: the first CUDA device if present, else cpu. */
  devices: string[] | undefined;
  engineThreads: number | undefined;
  confidenceThreshold: number;
  resolution: number | undefined;
  warmup: boolean;
  host: string;
  port: number;
  /** REPLICA_ID: this replica's name, put in front of every session, image and video id it makes (core/replica.ts). */
  replica: string | undefined;
  logLevel: (typeof LOG_LEVELS)[number];
  featureCache: { enabled: boolean; ttlMs: number; maxBytes: number; maxEntries: number };
  textCacheEntries: number;
  /** Prompts of one request run together in one head pass; undefined: 8 on CUDA, 1 on a CPU. */
  headBatch: number | undefined;
  /** maxBatchSize undefined: each device's default (LoadOptions.encodeBatch: 8 on CUDA, 1 on a CPU). */
  batching: { maxBatchSize: number | undefined; batchWaitMs: number; maxQueue: number; retryAfterSeconds: number };
  /** clientIdleTimeoutMs: a client that sends nothing for this long while the server waits on it gets a 408 / is disconnected. */
  limits: { maxBodyBytes: number; maxImagePixels: number; maxPrompts: number; maxBatchImages: number; clientIdleTimeoutMs: number };
  shutdownTimeoutMs: number;
  /**
   * SHUTDOWN_DELAY_MS: after a shutdown signal, how long the server keeps serving with readiness
   * withdrawn (/health/ready 503) before it refuses new requests, so load balancers stop sending first.
   */
  shutdownDelayMs: number;
  /**
   * HEAP_TRIM_INTERVAL_MS / HEAP_TRIM_MIN_FREE_MB: every intervalMs (0: never), when the native heap
   * holds at least minFreeBytes free, its free pages go back to the system (glibc malloc_trim).
   */
  heapTrim: { intervalMs: number; minFreeBytes: number };
  /** CORS_ORIGINS: '*' or the origins browsers may call from (core/cors.ts); undefined: CORS off. */
  corsOrigins: CorsOrigins | undefined;
  /** API_KEYS: the keys a request must carry one of (core/access.ts); empty: no authentication. */
  apiKeys: readonly string[];
  video: {
    /** Absolute folder that video_path values resolve inside and uploads are stored under. */
    mediaRoot: string;
    maxSessions: number;
    idleTimeoutMs: number;
    /** Per session: decoded frames plus tracker features (split in video/sessions.ts). */
    frameCacheBytes: number;
    maxUploadBytes: number;
    /** UPLOAD_TTL_SECONDS: an upload unused this long is deleted (video/uploads.ts); 0: kept for ever. */
    uploadTtlMs: number;
    /** Concept-tracking settings set by the environment (Sam3VideoConfig names); the rest are the bundle's. */
    concept: Partial<ConceptConfig>;
  };
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface LoadConfigOptions {
  /** .env file to read (default: .env in the working directory). Missing is fine. */
  envFile?: string | false;
  /** Root for relative paths (default: the package root). */
  root?: string;
}

/**
 * Reads and validates the configuration. Values from `env` win over the .env file.
 * Throws ConfigError naming every bad key.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env, options: LoadConfigOptions = {}): ServerConfig {
  const root = options.root ?? packageRoot;
  const fileVars: Record<string, string> = {};
  const envFile = options.envFile === undefined ? path.resolve('.env') : options.envFile;
  if (envFile && existsSync(envFile)) Object.assign(fileVars, parseDotenv(readFileSync(envFile)));
  const merged: Record<string, string> = { ...fileVars };
  for (const key of Object.keys(envSchema.shape)) {
    const v = env[key];
    if (v !== undefined) merged[key] = v;
  }
  // An empty value means "unset" (a common .env idiom: KEY=).
  for (const [k, v] of Object.entries(merged)) if (v.trim() === '') delete merged[k];
  const picked: Record<string, string> = {};
  for (const key of Object.keys(envSchema.shape)) if (merged[key] !== undefined) picked[key] = merged[key];

  const parsed = envSchema.safeParse(picked);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const key = String(i.path[0] ?? '(config)');
      // Secrets are never echoed into a log.
      const value = SECRET_KEYS.has(key) ? '(hidden)' : JSON.stringify(picked[key] ?? '');
      return `${key}=${value}: ${i.message}`;
    });
    throw new ConfigError(`invalid configuration (environment or .env):\n  ${lines.join('\n  ')}`);
  }
  const e = parsed.data;
  const resolve = (p: string) => (path.isAbsolute(p) ? p : path.resolve(root, p));

  let devices: string[] | undefined;
  if (e.DEVICES) devices = e.DEVICES.split(',').map((d) => d.trim());
  else if (e.IMAGE_MODEL_DEVICE && e.IMAGE_MODEL_DEVICE !== 'auto') devices = [e.IMAGE_MODEL_DEVICE];

  return {
    checkpoint: e.SAM3_CHECKPOINT,
    root,
    exportDir: resolve(e.SAM3_EXPORT_DIR),
    exportDtype: e.SAM3_EXPORT_DTYPE === 'auto' ? undefined : e.SAM3_EXPORT_DTYPE,
    python: e.SAM3_PYTHON ? resolve(e.SAM3_PYTHON) : path.join(root, '.venv', 'bin', 'python'),
    verifyBundle: e.SAM3_VERIFY_BUNDLE,
    devices,
    engineThreads: e.ENGINE_THREADS,
    confidenceThreshold: e.IMAGE_MODEL_CONFIDENCE_THRESHOLD,
    resolution: e.IMAGE_MODEL_RESOLUTION,
    warmup: e.IMAGE_MODEL_WARMUP,
    host: e.SERVER_HOST,
    port: e.SERVER_PORT,
    replica: e.REPLICA_ID,
    logLevel: e.LOG_LEVEL,
    featureCache: {
      enabled: e.ENABLE_FEATURE_CACHE,
      ttlMs: e.FEATURE_CACHE_TTL_SECONDS * 1000,
      maxBytes: Math.floor(e.FEATURE_CACHE_MAX_MB * 1024 * 1024),
      maxEntries: e.FEATURE_CACHE_MAX_ENTRIES,
    },
    textCacheEntries: e.TEXT_CACHE_ENTRIES,
    headBatch: e.HEAD_BATCH_SIZE,
    batching: { maxBatchSize: e.MAX_BATCH_SIZE, batchWaitMs: e.BATCH_WAIT_MS, maxQueue: e.MAX_QUEUE_SIZE, retryAfterSeconds: e.RETRY_AFTER_SECONDS },
    limits: {
      maxBodyBytes: Math.floor(e.MAX_BODY_MB * 1024 * 1024),
      maxImagePixels: e.MAX_IMAGE_PIXELS,
      maxPrompts: e.MAX_PROMPTS_PER_REQUEST,
      maxBatchImages: e.MAX_IMAGES_PER_BATCH,
      clientIdleTimeoutMs: e.CLIENT_IDLE_TIMEOUT_MS,
    },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    shutdownDelayMs: e.SHUTDOWN_DELAY_MS,
    heapTrim: { intervalMs: e.HEAP_TRIM_INTERVAL_MS, minFreeBytes: Math.floor(e.HEAP_TRIM_MIN_FREE_MB * 1024 * 1024) },
    corsOrigins: e.CORS_ORIGINS,
    apiKeys: e.API_KEYS ?? [],
    video: {
      mediaRoot: resolve(e.MEDIA_ROOT),
      maxSessions: e.MAX_SESSIONS,
      idleTimeoutMs: e.SESSION_IDLE_TIMEOUT_SECONDS * 1000,
      frameCacheBytes: Math.floor(e.VIDEO_FRAME_CACHE_MB * 1024 * 1024),
      maxUploadBytes: Math.floor(e.MAX_UPLOAD_MB * 1024 * 1024),
      uploadTtlMs: e.UPLOAD_TTL_SECONDS * 1000,
      concept: Object.fromEntries(Object.entries(CONCEPT_KEYS).flatMap(([key, field]) => (e[key as keyof typeof CONCEPT_KEYS] === undefined ? [] : [[field, e[key as keyof typeof CONCEPT_KEYS]]]))),
    },
  };
}

/** Threads per engine: the given value, or the machine's cores shared among the CPU engines. */
export function threadsPerEngine(config: ServerConfig, devices: readonly string[]): number {
  if (config.engineThreads) return config.engineThreads;
  const cpuEngines = devices.filter((d) => d === 'cpu').length;
  const cores = os.availableParallelism();
  return cpuEngines > 0 ? Math.max(1, Math.floor(cores / cpuEngines)) : Math.min(4, cores);
}

/** Every environment key the server reads (.env.example documents each). */
export const CONFIG_KEYS: readonly string[] = Object.keys(envSchema.shape);
