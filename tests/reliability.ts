/**
 * The reliability suite (in the spirit of Triton's L0_http_fuzz and L0_memory_growth), against the
 * real server in its own process over the tiny fixture bundle:
 * - fuzz: seeded hostile requests over every endpoint (bodies generated from the OpenAPI
 *   document), malformed HTTP and WebSocket junk, interleaved with valid requests that must all
 *   succeed; no 5xx for a client's mistake, every error a JSON body with a code, no crash, no hang;
 * - churn: hundreds of video session open / prompt / propagate / close cycles and image cache
 *   cycles (new images embedded, prompted by id and clicked), MAX_SESSIONS refusing the one too
 *   many with 429; RSS (less the feature cache, which has its own gauge) must stay bounded;
 * - soak: concurrent valid traffic for a while (after a warm-up at the same concurrency, which sets
 *   the baseline); everything succeeds, RSS stays bounded, and the
 *   gauges (sessions, queues, in-flight requests) come back to zero.
 *
 * tests/reliability.test.ts runs a short form in `npm run test:node`; `npm run test:soak` runs the
 * long form: SOAK_SEED, SOAK_FUZZ_MINUTES (10), SOAK_MINUTES (5), SOAK_CHURN_CYCLES (300),
 * SOAK_CONCURRENCY (8), SOAK_API_KEY (when the server needs one); it prints a JSON report and exits
 * 1 when any check failed.
 */
import { rm } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

import { Client, type Failure, Tally } from './reliability/client.js';
import { type Fixtures, makeFixtures } from './reliability/fixtures.js';
import { HOSTILE_CASES, type HostileContext, operationsOf } from './reliability/hostile.js';
import { Rng } from './reliability/random.js';
import { runRawCase, runSocketCase } from './reliability/raw.js';
import { type Gauges, MiB, type ServerProcess, readGauges, settledGauges, startServerProcess } from './reliability/server.js';
import { VALID_STEPS, type World } from './reliability/valid.js';
import { fixture, jpegImage, pngImage } from './helpers.js';

export const IDLE_TIMEOUT_MS = 2000;
export const MAX_SESSIONS = 24;

export interface Suite {
  server: ServerProcess;
  fx: Fixtures;
  apiKey: string | undefined;
  close(): Promise<void>;
}

/** Fixtures and the server process (env overrides for API_KEYS and the like). */
export async function startSuite(env: Record<string, string> = {}, apiKey?: string): Promise<Suite> {
  const fx = await makeFixtures();
  const { bundle } = await fixture();
  const server = await startServerProcess({
    SAM3_CHECKPOINT: bundle,
    MEDIA_ROOT: fx.media,
    CLIENT_IDLE_TIMEOUT_MS: String(IDLE_TIMEOUT_MS),
    MAX_SESSIONS: String(MAX_SESSIONS),
    FEATURE_CACHE_MAX_ENTRIES: '48',
    // The default FEATURE_CACHE_TTL_SECONDS (600): the long form runs past it, and a valid step
    // reusing an image_id must find it (expiry slides from the last use; when it counted from
    // insertion, a step lost an image_id at the 10-minute mark).
    ENGINE_THREADS: '2',
    ...env,
  });
  return {
    server,
    fx,
    apiKey,
    async close() {
      await server.stop();
      await rm(fx.media, { recursive: true, force: true });
    },
  };
}

/** RSS less the feature cache (the cache grows to its bound by design and has its own gauge). */
const mib = (bytes: number) => Math.round((bytes / MiB) * 10) / 10;

const rssLessCache = (g: Gauges) => g.rssBytes - (Number.isFinite(g.featureCacheBytes) ? g.featureCacheBytes : 0);

export interface Watch {
  healthMaxMs: number;
  eventLoopLagMaxMs: number;
  rssMaxBytes: number;
  /** RSS less the feature cache, MiB, every 30 s. */
  series: number[];
  stop(): Promise<void>;
}

/** Samples /health latency and the server's event-loop lag every second while traffic runs. */
function watch(suite: Suite): Watch {
  const w: Watch = { healthMaxMs: 0, eventLoopLagMaxMs: 0, rssMaxBytes: 0, series: [], stop: async () => undefined };
  let lastSample = 0;
  let running = true;
  const headers: Record<string, string> = suite.apiKey ? { authorization: `Bearer ${suite.apiKey}` } : {};
  const loop = (async () => {
    while (running && !suite.server.exited) {
      const start = performance.now();
      await fetch(`${suite.server.base}/health`, { signal: AbortSignal.timeout(60_000) }).then((r) => r.text()).catch(() => undefined);
      w.healthMaxMs = Math.max(w.healthMaxMs, performance.now() - start);
      const g = await readGauges(suite.server.base, headers).catch(() => undefined);
      if (g) {
        w.eventLoopLagMaxMs = Math.max(w.eventLoopLagMaxMs, g.eventLoopLagMaxSeconds * 1000);
        w.rssMaxBytes = Math.max(w.rssMaxBytes, g.rssBytes);
        if (Date.now() - lastSample >= 30_000) {
          lastSample = Date.now();
          w.series.push(mib(rssLessCache(g)));
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  w.stop = async () => {
    running = false;
    await loop;
  };
  return w;
}

export interface FuzzReport {
  seed: number;
  seconds: number;
  requests: number;
  valid: number;
  hostile: number;
  websockets: number;
  rawConnections: number;
  classes: Record<string, number>;
  statuses: Record<string, number>;
  /** Hostile requests whose connection the server closed before answering, by case. */
  cutOff: Record<string, number>;
  failures: Failure[];
  healthMaxMs: number;
  eventLoopLagMaxMs: number;
  rssStartMiB: number;
  rssEndMiB: number;
  rssMaxMiB: number;
  featureCacheEndMiB: number;
  gaugesAfter: Gauges;
  crashed: boolean;
  logLevels: Record<number, number>;
  severeLogs: Record<string, unknown>[];
}

async function keepHostileSessions(client: Client, fx: Fixtures, sessions: string[], want: number): Promise<void> {
  const listed = await client.send({ name: 'setup:sessions', method: 'GET', path: '/api/v1/video/sessions' }, true);
  const open = new Set<string>((listed?.json?.sessions ?? []).map((s: { session_id: string }) => s.session_id));
  for (let i = sessions.length - 1; i >= 0; i--) if (!open.has(sessions[i]!)) sessions.splice(i, 1);
  while (sessions.length < want) {
    const r = await client.send({ name: 'setup:hostile-session', method: 'POST', path: '/api/v1/video/session/start', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ video_path: fx.videoPath, session_id: `fuzz_${Math.random().toString(36).slice(2, 10)}` }) }, true);
    if (typeof r?.json?.session_id !== 'string') return;
    sessions.push(r.json.session_id);
    await client.send({ name: 'setup:hostile-prompt', method: 'POST', path: `/api/v1/video/session/${r.json.session_id}/prompt`, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ frame_index: 0, prompts: [{ type: 'box', box: [0.1, 0.1, 0.5, 0.5] }] }) }, true);
  }
}

export interface FuzzOptions {
  seed: number;
  /** Run at least this long... */
  durationMs: number;
  /** ...and until this many requests were sent (a loaded machine sends fewer per second)... */
  minRequests?: number;
  /** ...but never longer than this. */
  maxMs?: number;
  concurrency: number;
  /** Share of iterations that are valid client steps (default 0.12). */
  validRatio?: number;
}

export async function runFuzz(suite: Suite, options: FuzzOptions): Promise<FuzzReport> {
  const { server, fx } = suite;
  const tally = new Tally();
  const client = new Client(server.base, tally, suite.apiKey);
  const doc = (await client.send({ name: 'setup:openapi', method: 'GET', path: '/openapi.json' }, true))?.json;
  const ops = operationsOf(doc);
  const before = await readGauges(server.base, client.authHeaders);
  const sessions: string[] = [];
  await keepHostileSessions(client, fx, sessions, 2);
  const validRatio = options.validRatio ?? 0.12;
  const watcher = watch(suite);
  const start = Date.now();
  const end = start + options.durationMs;
  const hardEnd = start + Math.max(options.maxMs ?? options.durationMs, options.durationMs);
  const more = () => !server.exited && Date.now() < hardEnd && (Date.now() < end || tally.requests < (options.minRequests ?? 0));
  const validNames = Object.keys(VALID_STEPS);
  const hostileNames = Object.keys(HOSTILE_CASES);
  let keeper = Date.now();
  const worker = async (index: number) => {
    const rng = new Rng(options.seed * 1009 + index);
    const world: World = { client, fx, rng };
    const ctx: HostileContext = { rng, fx, doc, ops, sessions };
    while (more()) {
      const r = rng.next();
      if (r < validRatio) {
        await VALID_STEPS[rng.pick(validNames)]!(world);
      } else if (r < validRatio + 0.05) {
        await runRawCase(client, rng, IDLE_TIMEOUT_MS * 2 + 8000);
      } else if (r < validRatio + 0.12) {
        await runSocketCase(client, rng, sessions);
      } else {
        const req = HOSTILE_CASES[rng.pick(hostileNames)]!(ctx);
        const answer = await client.send(req, false, 60_000);
        // A hostile request that opened a session anyway: close it (MAX_SESSIONS is shared).
        const opened = answer?.status === 200 && req.path.endsWith('/session/start') ? answer.json?.session_id : undefined;
        if (typeof opened === 'string') await client.send({ name: 'cleanup:session', method: 'DELETE', path: `/api/v1/video/session/${encodeURIComponent(opened)}` }, false);
      }
      if (index === 0 && Date.now() - keeper > 3000) {
        keeper = Date.now();
        await keepHostileSessions(client, fx, sessions, 2);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, (_, i) => worker(i)));
  await watcher.stop();
  const crashed = server.exited !== undefined;
  if (crashed) tally.fail({ kind: 'server_error', name: 'crash', detail: `the server exited ${JSON.stringify(server.exited)}` });
  let after = before;
  if (!crashed) {
    // Close everything still open so the gauges can come back to zero.
    const listed = await client.send({ name: 'setup:sessions', method: 'GET', path: '/api/v1/video/sessions' }, true);
    for (const s of listed?.json?.sessions ?? []) await client.send({ name: 'cleanup:session', method: 'DELETE', path: `/api/v1/video/session/${encodeURIComponent(s.session_id)}` }, true);
    after = await settledGauges(server.base, 30_000, client.authHeaders);
  }
  return {
    seed: options.seed,
    seconds: Math.round((Date.now() - start) / 1000),
    requests: tally.requests,
    valid: tally.valid,
    hostile: tally.hostile,
    websockets: tally.wsConnections,
    rawConnections: tally.rawConnections,
    classes: tally.classes(),
    statuses: tally.statuses,
    cutOff: tally.cutOff,
    failures: tally.failures,
    healthMaxMs: Math.round(watcher.healthMaxMs),
    eventLoopLagMaxMs: Math.round(watcher.eventLoopLagMaxMs),
    rssStartMiB: mib(before.rssBytes),
    rssEndMiB: mib(after.rssBytes),
    rssMaxMiB: mib(watcher.rssMaxBytes),
    featureCacheEndMiB: mib(after.featureCacheBytes),
    gaugesAfter: after,
    crashed,
    logLevels: { ...server.levels },
    severeLogs: server.severe.slice(0, 20),
  };
}

export interface ChurnReport {
  seconds: number;
  requests: number;
  sessionCycles: number;
  imageCycles: number;
  tooManySessions: number | undefined;
  /** RSS less the feature cache after warm-up, and at the end. */
  baselineMiB: number;
  endMiB: number;
  growthMiB: number;
  featureCacheEndMiB: number;
  gaugesAfter: Gauges;
  failures: Failure[];
}

export async function runChurn(suite: Suite, options: { seed: number; sessionCycles: number; imageCycles: number; warmup?: number }): Promise<ChurnReport> {
  const { server, fx } = suite;
  const tally = new Tally();
  const client = new Client(server.base, tally, suite.apiKey);
  const rng = new Rng(options.seed);
  const world: World = { client, fx, rng };
  const warmup = options.warmup ?? 10;
  const start = Date.now();
  let baseline: Gauges | undefined;
  const imageCycle = async (i: number) => {
    // A new image each time: the cache takes it in and evicts old ones at FEATURE_CACHE_MAX_ENTRIES.
    const w = 64 + (i % 7) * 8;
    const h = 48 + (i % 5) * 8;
    const bytes = i % 2 ? await pngImage(w, h, 1000 + i) : await jpegImage(w, h, 1000 + i);
    const embedded = await client.send({ name: 'churn:embed', method: 'POST', path: '/api/v1/image/embed', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: bytes.toString('base64') }) }, true);
    const id = embedded?.json?.image_id;
    if (typeof id !== 'string') return;
    await client.send({ name: 'churn:segment', method: 'POST', path: '/api/v1/image/segment', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image_id: id, prompts: [{ type: 'text', text: 'cat' }] }) }, true);
    await client.send({ name: 'churn:click', method: 'POST', path: '/api/v1/image/interactive', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image_id: id, points: [{ point: [0.5, 0.5], label: 1 }] }) }, true);
  };
  const total = Math.max(options.sessionCycles, options.imageCycles);
  for (let i = 0; i < total && !server.exited; i++) {
    if (i < options.sessionCycles) await VALID_STEPS.video!(world);
    if (i < options.imageCycles) await imageCycle(i);
    if (i + 1 === Math.min(warmup, total)) baseline = await settledGauges(server.base, 30_000, client.authHeaders);
  }
  // MAX_SESSIONS: the one too many is a 429, and closing them frees every slot.
  const opened: string[] = [];
  let tooMany: number | undefined;
  for (let i = 0; i <= MAX_SESSIONS && !server.exited; i++) {
    const r = await client.send({ name: 'churn:fill-sessions', method: 'POST', path: '/api/v1/video/session/start', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ video_path: fx.videoPath }) }, i < MAX_SESSIONS);
    if (r?.status === 200) opened.push(r.json.session_id);
    else tooMany = r?.status;
  }
  if (tooMany !== 429) tally.fail({ kind: 'valid_failed', name: 'churn:max-sessions', detail: `session ${MAX_SESSIONS + 1} got ${tooMany}, expected 429` });
  for (const id of opened) await client.send({ name: 'churn:close-sessions', method: 'DELETE', path: `/api/v1/video/session/${id}` }, true);
  const after = await settledGauges(server.base, 30_000, client.authHeaders);
  const base = baseline ?? after;
  if (server.exited) tally.fail({ kind: 'server_error', name: 'crash', detail: `the server exited ${JSON.stringify(server.exited)}` });
  return {
    seconds: Math.round((Date.now() - start) / 1000),
    requests: tally.requests,
    sessionCycles: options.sessionCycles,
    imageCycles: options.imageCycles,
    tooManySessions: tooMany,
    baselineMiB: mib(rssLessCache(base)),
    endMiB: mib(rssLessCache(after)),
    growthMiB: mib(rssLessCache(after) - rssLessCache(base)),
    featureCacheEndMiB: mib(after.featureCacheBytes),
    gaugesAfter: after,
    failures: tally.failures,
  };
}

export interface SoakReport {
  seconds: number;
  concurrency: number;
  requests: number;
  classes: Record<string, number>;
  healthMaxMs: number;
  eventLoopLagMaxMs: number;
  startMiB: number;
  endMiB: number;
  growthMiB: number;
  featureCacheEndMiB: number;
  gaugesAfter: Gauges;
  /** RSS less the feature cache during the soak, MiB, every 30 s. */
  seriesMiB: number[];
  failures: Failure[];
}

/**
 * warmupMs: the same traffic first, before the baseline is taken: the first minutes at a new
 * concurrency grow RSS once (glibc gives each thread that allocates its own arena, libtorch's pools
 * fill), which is not growth under sustained traffic. Its failures count like the soak's.
 */
export async function runSoak(suite: Suite, options: { seed: number; durationMs: number; concurrency: number; warmupMs?: number }): Promise<SoakReport> {
  const { server, fx } = suite;
  const tally = new Tally();
  const client = new Client(server.base, tally, suite.apiKey);
  const names = Object.keys(VALID_STEPS).filter((n) => n !== 'upload');
  const worlds: World[] = Array.from({ length: options.concurrency }, (_, i) => ({ client, fx, rng: new Rng(options.seed * 7919 + i) }));
  const drive = (until: number) =>
    Promise.all(
      worlds.map(async (world) => {
        while (Date.now() < until && !server.exited) await VALID_STEPS[world.rng.pick(names)]!(world);
      }),
    );
  if (options.warmupMs) await drive(Date.now() + options.warmupMs);
  const before = await settledGauges(server.base, 30_000, client.authHeaders);
  const watcher = watch(suite);
  const start = Date.now();
  await drive(start + options.durationMs);
  await watcher.stop();
  if (server.exited) tally.fail({ kind: 'server_error', name: 'crash', detail: `the server exited ${JSON.stringify(server.exited)}` });
  const after = await settledGauges(server.base, 30_000, client.authHeaders);
  return {
    seconds: Math.round((Date.now() - start) / 1000),
    concurrency: options.concurrency,
    requests: tally.requests,
    classes: tally.classes(),
    healthMaxMs: Math.round(watcher.healthMaxMs),
    eventLoopLagMaxMs: Math.round(watcher.eventLoopLagMaxMs),
    startMiB: mib(rssLessCache(before)),
    endMiB: mib(rssLessCache(after)),
    growthMiB: mib(rssLessCache(after) - rssLessCache(before)),
    featureCacheEndMiB: mib(after.featureCacheBytes),
    gaugesAfter: after,
    seriesMiB: watcher.series,
    failures: tally.failures,
  };
}

/** Whether the gauges are back at zero (nothing open, queued or in flight). */
export function atBaseline(g: Gauges): boolean {
  return g.sessions === 0 && g.sessionMemoryBytes === 0 && g.encodeQueue === 0 && g.jobsAdmitted === 0 && g.nativeQueue === 0 && g.inFlight === 0;
}

async function main(): Promise<void> {
  const env = process.env;
  const seed = Number(env.SOAK_SEED ?? Date.now() % 1_000_000);
  const minutes = (key: string, fallback: number) => Number(env[key] ?? fallback) * 60_000;
  const concurrency = Number(env.SOAK_CONCURRENCY ?? 8);
  const cycles = Number(env.SOAK_CHURN_CYCLES ?? 300);
  const apiKey = env.SOAK_API_KEY;
  const log = (msg: string) => process.stderr.write(`[soak ${new Date().toISOString()}] ${msg}\n`);
  log(`seed ${seed}; fuzz ${minutes('SOAK_FUZZ_MINUTES', 10) / 60_000} min, churn ${cycles} cycles, soak ${minutes('SOAK_MINUTES', 5) / 60_000} min at concurrency ${concurrency}`);
  const suite = await startSuite(apiKey ? { API_KEYS: apiKey } : {}, apiKey);
  let ok = false;
  const report: Record<string, unknown> = { seed };
  try {
    const fuzz = await runFuzz(suite, { seed, durationMs: minutes('SOAK_FUZZ_MINUTES', 10), concurrency });
    report.fuzz = fuzz;
    log(`fuzz: ${fuzz.requests} requests, ${JSON.stringify(fuzz.classes)}, ${fuzz.failures.length} failures ${JSON.stringify(fuzz.failures)}`);
    const churn = await runChurn(suite, { seed, sessionCycles: cycles, imageCycles: cycles, warmup: 20 });
    report.churn = churn;
    log(`churn: ${churn.requests} requests in ${churn.seconds} s, RSS less cache ${churn.baselineMiB} -> ${churn.endMiB} MiB, ${churn.failures.length} failures ${JSON.stringify(churn.failures)}`);
    const soak = await runSoak(suite, { seed, durationMs: minutes('SOAK_MINUTES', 5), concurrency, warmupMs: 30_000 });
    report.soak = soak;
    log(`soak: ${soak.requests} requests, RSS less cache ${soak.startMiB} -> ${soak.endMiB} MiB (every 30 s: ${soak.seriesMiB.join(', ')}), ${soak.failures.length} failures ${JSON.stringify(soak.failures)}`);
    report.rssFinalMiB = mib((await readGauges(suite.server.base, apiKey ? { authorization: `Bearer ${apiKey}` } : {})).rssBytes);
    const bound = (base: number) => Math.max(64, base * 0.1);
    ok =
      fuzz.failures.length === 0 &&
      !fuzz.crashed &&
      atBaseline(fuzz.gaugesAfter) &&
      churn.failures.length === 0 &&
      atBaseline(churn.gaugesAfter) &&
      churn.growthMiB < bound(churn.baselineMiB) &&
      soak.failures.length === 0 &&
      atBaseline(soak.gaugesAfter) &&
      soak.growthMiB < bound(soak.startMiB);
  } finally {
    const exit = await suite.server.stop();
    report.exit = exit;
    await suite.close();
  }
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  log(ok ? 'all checks passed' : 'FAILED');
  process.exit(ok ? 0 : 1);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
