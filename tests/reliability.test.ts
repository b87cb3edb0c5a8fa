/**
 * The reliability suite's short form (tests/reliability.ts has the long one, `npm run test:soak`):
 * a seeded fuzz of every endpoint, the WebSocket and raw HTTP with valid requests interleaved; a
 * churn of video sessions and image cache entries; a concurrent soak. The server runs in its own
 * process; it must never crash, never answer a client's mistake with a 5xx or a non-JSON error,
 * keep every valid request working, keep RSS (less the feature cache) bounded and bring its gauges
 * back to zero. SOAK_SEED picks the seed (default: a fixed one, so CI is reproducible).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { type Suite, atBaseline, runChurn, runFuzz, runSoak, startSuite } from './reliability.js';

const SEED = Number(process.env.SOAK_SEED ?? 18);
/** RSS growth allowed over a run: 64 MiB or 10% of the starting figure (allocator arenas settle). */
const bound = (baselineMiB: number) => Math.max(64, baselineMiB * 0.1);

describe(`reliability (seed ${SEED})`, () => {
  let suite: Suite;

  before(async () => {
    // The trimmer tight: with the server's default (trim once 64 MiB is free, every 5 s) up to
    // 64 MiB of free heap not yet handed back reads as RSS growth in a run this short.
    suite = await startSuite({ HEAP_TRIM_INTERVAL_MS: '1000', HEAP_TRIM_MIN_FREE_MB: '8' });
  });
  after(async () => suite?.close());

  it('fuzz: hostile requests over every endpoint, the WebSocket and raw HTTP; valid ones interleaved all succeed', async (t) => {
    const r = await runFuzz(suite, { seed: SEED, durationMs: 20_000, minRequests: 400, maxMs: 150_000, concurrency: 4 });
    t.diagnostic(`${r.requests} requests (${r.valid} valid, ${r.hostile} hostile, ${r.websockets} WebSockets, ${r.rawConnections} raw) in ${r.seconds} s: ${JSON.stringify(r.classes)}; /health max ${r.healthMaxMs} ms, event loop lag max ${r.eventLoopLagMaxMs} ms; RSS ${r.rssStartMiB} -> ${r.rssEndMiB} MiB`);
    assert.equal(r.crashed, false);
    assert.deepEqual(r.failures, [], `seed ${SEED}: ${JSON.stringify(r.failures, null, 1)}`);
    assert.ok(r.requests >= 400 && r.valid >= 20 && r.hostile >= 200 && r.websockets >= 5 && r.rawConnections >= 3, JSON.stringify({ valid: r.valid, hostile: r.hostile, ws: r.websockets, raw: r.rawConnections }));
    assert.ok((r.classes['4xx'] ?? 0) > r.hostile / 3, 'most hostile requests are refused');
    assert.equal(r.classes['5xx'] ?? 0, 0);
    assert.ok(atBaseline(r.gaugesAfter), `gauges back at zero: ${JSON.stringify(r.gaugesAfter)}`);
    assert.ok(r.eventLoopLagMaxMs < 3000, `the server's event loop was held ${r.eventLoopLagMaxMs} ms`);
    assert.deepEqual(r.severeLogs.filter((l) => Number(l.level) >= 50 || Number(l.level) === 0), [], 'no error-level or non-JSON log line');
  });

  it('churn: video sessions and image cache entries come and go; RSS less the feature cache stays bounded, 429 at MAX_SESSIONS', async (t) => {
    const r = await runChurn(suite, { seed: SEED, sessionCycles: 30, imageCycles: 40, warmup: 8 });
    t.diagnostic(`${r.requests} requests in ${r.seconds} s; RSS less feature cache ${r.baselineMiB} -> ${r.endMiB} MiB (growth ${r.growthMiB}, bound ${bound(r.baselineMiB)}); feature cache ${r.featureCacheEndMiB} MiB`);
    assert.deepEqual(r.failures, []);
    assert.equal(r.tooManySessions, 429);
    assert.ok(atBaseline(r.gaugesAfter), JSON.stringify(r.gaugesAfter));
    assert.ok(r.growthMiB < bound(r.baselineMiB), `RSS less the cache grew ${r.growthMiB} MiB`);
  });

  it('soak: concurrent valid traffic all succeeds, gauges back at zero, RSS bounded; SIGTERM then exits 0', async (t) => {
    const r = await runSoak(suite, { seed: SEED, durationMs: 12_000, concurrency: 6, warmupMs: 6_000 });
    t.diagnostic(`${r.requests} requests at concurrency ${r.concurrency} in ${r.seconds} s; RSS less feature cache ${r.startMiB} -> ${r.endMiB} MiB; event loop lag max ${r.eventLoopLagMaxMs} ms`);
    assert.deepEqual(r.failures, []);
    assert.ok(r.requests >= 12, `${r.requests} requests`);
    assert.ok(atBaseline(r.gaugesAfter), JSON.stringify(r.gaugesAfter));
    assert.ok(r.growthMiB < bound(r.startMiB), `RSS less the cache grew ${r.growthMiB} MiB`);
    const exit = await suite.server.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal(suite.server.levels[50] ?? 0, 0, `error-level log lines: ${JSON.stringify(suite.server.severe.slice(0, 5))}`);
    assert.equal(suite.server.levels[60] ?? 0, 0);
  });
});
