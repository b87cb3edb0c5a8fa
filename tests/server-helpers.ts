/**
 * Helpers for the HTTP service tests: the real app from createApp() on port 0 over the tiny fixture
 * bundle and the real addon, with its log lines captured so tests can look for request ids.
 */
import type { Server } from 'node:http';
import { Writable } from 'node:stream';

import { pino } from 'pino';

import { type Sam3App, createApp } from '../src/server/core/app.js';
import { loadConfig } from '../src/server/core/config.js';
import { fixture } from './helpers.js';

export interface LogLine {
  level: number;
  msg: string;
  req_id?: string;
  [key: string]: unknown;
}

export interface TestServer {
  base: string;
  svc: Sam3App;
  server: Server;
  logs: LogLine[];
  bundle: string;
  close(): Promise<void>;
}

export interface StartOptions {
  now?: () => number;
  /** Wait for the model to load (default true). */
  wait?: boolean;
}

/** Starts the app over the fixture bundle; env entries override the test defaults. */
export async function startServer(env: Record<string, string> = {}, options: StartOptions = {}): Promise<TestServer> {
  const bundle = env.SAM3_CHECKPOINT ?? (await fixture()).bundle;
  const config = loadConfig({ IMAGE_MODEL_WARMUP: 'false', ENGINE_THREADS: '2', LOG_LEVEL: 'debug', SHUTDOWN_TIMEOUT_MS: '10000', ...env, SAM3_CHECKPOINT: bundle }, { envFile: false });
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const logger = pino({ level: config.logLevel }, sink);
  const svc = createApp({ config, logger, ...(options.now ? { now: options.now } : {}) });
  const server = await svc.listen(0, '127.0.0.1');
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  if (options.wait !== false) await svc.ready;
  return { base: `http://127.0.0.1:${port}`, svc, server, logs, bundle, close: () => svc.close() };
}

export interface Reply<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

async function reply<T>(res: Response): Promise<Reply<T>> {
  const text = await res.text();
  let body: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json')) body = JSON.parse(text);
  return { status: res.status, headers: res.headers, body: body as T, text };
}

export async function postJson<T = any>(base: string, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return reply<T>(res);
}

export async function postRaw<T = any>(base: string, path: string, body: BodyInit, headers: Record<string, string> = {}): Promise<Reply<T>> {
  return reply<T>(await fetch(base + path, { method: 'POST', headers, body }));
}

export async function get<T = any>(base: string, path: string): Promise<Reply<T>> {
  return reply<T>(await fetch(base + path));
}

/** The value of one Prometheus sample, e.g. metric('sam3_encode_batch_size_count', {device: 'cpu#0'}). */
export function metric(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name)) continue;
    const m = /^([\w:]+)(\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) got[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) total = (total ?? 0) + Number(m[4]);
  }
  return total;
}

export async function metrics(base: string): Promise<string> {
  return (await get<string>(base, '/metrics')).text;
}

export function b64(buf: Buffer): string {
  return buf.toString('base64');
}

/** A Blob of the bytes (FormData parts), copied so its type is a plain ArrayBuffer. */
export function blob(buf: Buffer, type = 'application/octet-stream'): Blob {
  return new Blob([new Uint8Array(buf)], { type });
}
