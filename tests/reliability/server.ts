/**
 * The server under test for the reliability suite: `src/server/main.ts` in its own process (as it
 * runs in production), so a crash is seen as an exit, its RSS is its own, and its log is read
 * line by line. Gauges come from its /metrics.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';

import { root } from '../helpers.js';

export interface ServerProcess {
  base: string;
  child: ChildProcess;
  /** Log lines by level (pino numbers), and the warn-and-above lines themselves (at most 200). */
  levels: Record<number, number>;
  severe: Record<string, unknown>[];
  /** Set when the process exited (a crash, unless stop() was called). */
  exited: { code: number | null; signal: string | null } | undefined;
  stop(): Promise<{ code: number | null; signal: string | null }>;
}

export async function startServerProcess(env: Record<string, string>): Promise<ServerProcess> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, SERVER_HOST: '127.0.0.1', SERVER_PORT: '0', LOG_LEVEL: 'info', IMAGE_MODEL_WARMUP: 'false', ...env };
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'server', 'main.ts')], { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const levels: Record<number, number> = {};
  const severe: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-4000)));
  const server: ServerProcess = {
    base: '',
    child,
    levels,
    severe,
    exited: undefined,
    async stop() {
      if (server.exited) return server.exited;
      child.kill('SIGTERM');
      const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
      return { code, signal };
    },
  };
  child.on('exit', (code, signal) => (server.exited = { code, signal }));
  const listening = new Promise<string>((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`the server exited (${code}) before listening: ${stderr}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        levels[0] = (levels[0] ?? 0) + 1; // not JSON: counted, never expected
        if (severe.length < 200) severe.push({ level: 0, msg: line.slice(0, 300) });
        return;
      }
      const level = Number(entry.level);
      levels[level] = (levels[level] ?? 0) + 1;
      if (level >= 40 && severe.length < 200) severe.push(entry);
      if (typeof entry.port === 'number' && /^listening/.test(String(entry.msg))) resolve(`http://127.0.0.1:${entry.port}`);
    });
  });
  server.base = await listening;
  for (let i = 0; i < 600; i++) {
    const r = await fetch(`${server.base}/health`).catch(() => undefined);
    if (r?.status === 200) return server;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the server did not become healthy in 60 s');
}

/** Every sample of a metric summed over its label sets (undefined when absent). */
export function metricValue(text: string, name: string): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([\w:]+)(\{[^}]*\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    total = (total ?? 0) + Number(m[3]);
  }
  return total;
}

export interface Gauges {
  rssBytes: number;
  featureCacheBytes: number;
  sessions: number;
  sessionMemoryBytes: number;
  encodeQueue: number;
  jobsAdmitted: number;
  nativeQueue: number;
  /** HTTP requests in flight, less the scrape itself. */
  inFlight: number;
  /** The server's worst event-loop delay since the previous scrape (prom-client resets it). */
  eventLoopLagMaxSeconds: number;
}

export async function readGauges(base: string, headers: Record<string, string> = {}): Promise<Gauges> {
  const text = await (await fetch(`${base}/metrics`, { headers })).text();
  const v = (name: string) => metricValue(text, name) ?? NaN;
  return {
    rssBytes: v('process_resident_memory_bytes'),
    featureCacheBytes: v('sam3_feature_cache_bytes'),
    // Per device, and no sample at all while no session is open.
    sessions: metricValue(text, 'sam3_video_sessions_active') ?? 0,
    sessionMemoryBytes: metricValue(text, 'sam3_video_session_memory_bytes') ?? 0,
    encodeQueue: v('sam3_encode_queue_depth'),
    jobsAdmitted: v('sam3_jobs_admitted'),
    nativeQueue: v('sam3_engine_native_queue'),
    inFlight: v('sam3_http_requests_in_flight') - 1,
    eventLoopLagMaxSeconds: v('nodejs_eventloop_lag_max_seconds'),
  };
}

/** Waits until the work gauges are back at zero (requests finishing, sessions closing), up to timeoutMs. */
export async function settledGauges(base: string, timeoutMs = 30_000, headers: Record<string, string> = {}): Promise<Gauges> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const g = await readGauges(base, headers);
    const idle = g.sessions === 0 && g.sessionMemoryBytes === 0 && g.encodeQueue === 0 && g.jobsAdmitted === 0 && g.nativeQueue === 0 && g.inFlight === 0;
    if (idle || Date.now() > deadline) return g;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

export const MiB = 1024 * 1024;
