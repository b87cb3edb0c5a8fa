/**
 * `npm run soak:concept`: a memory soak of concept tracking over a long video. The tiny test model
 * (tests/helpers.ts fixture()) tracks text concepts forward over a synthetic video whose frames are
 * made on demand (nothing holds the whole video), and the process's RSS is sampled every --every
 * frames. The tracker keeps a bounded memory window per object (session option memoryWindow, 16
 * frames by default) and hotstart buffers at most hotstart_delay frames, so after the first window
 * RSS should stay flat: the script prints the series and the growth after the first sample.
 *
 *   npm run soak:concept [-- --frames 2000] [--every 100] [--prompts "red disc|green bar"]
 *                        [--threads 2] [--memory-window 16] [--feature-cache-mib 256] [--concept JSON]
 *                        [--trim-ms 5000]
 *                        [--out bench/results/concept-soak.json]   (--out '': no file)
 *
 * Thresholds: on the random tiny model every query scores ~0.25, so score_threshold_detection and
 * new_det_thresh 0.2 make each concept find objects on every frame (the bundle's 0.5 finds none).
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { Sam3Model, heapStats, keepNativeHeapTrimmed, runtimeInfo } from '../src/index.js';
import type { FrameSource, RgbFrame, VideoInfo } from '../src/video/source.js';
import { fixture, root } from '../tests/helpers.js';

const { values: args } = parseArgs({
  options: {
    frames: { type: 'string', default: '2000' },
    every: { type: 'string', default: '100' },
    prompts: { type: 'string', default: 'red disc|green bar' },
    threads: { type: 'string', default: String(Math.min(os.availableParallelism(), 2)) },
    'memory-window': { type: 'string' },
    // The session's frame-feature cache (VideoSessionOptions.featureCacheBytes, default 256 MiB):
    // it fills as frames go by, up to this bound, and its bytes count in the session's memoryBytes.
    'feature-cache-mib': { type: 'string' },
    // More concept settings (Sam3VideoConfig names), e.g. '{"hotstart_delay":0,"max_num_objects":4}':
    // with the defaults every object on the random tiny model is removed by hotstart 8 frames after
    // it appears, so none lives long enough to fill its memory window; these keep the first few for
    // the whole video.
    concept: { type: 'string', default: '{}' },
    // Trim the native heap every N ms as the server does (HEAP_TRIM_INTERVAL_MS); 0: never.
    'trim-ms': { type: 'string', default: '0' },
    width: { type: 'string', default: '160' },
    height: { type: 'string', default: '120' },
    out: { type: 'string', default: path.join(root, 'bench', 'results', 'concept-soak.json') },
  },
});
const FRAMES = Number(args.frames);
const EVERY = Number(args.every);
const W = Number(args.width);
const H = Number(args.height);
const PROMPTS = args.prompts!.split('|').filter(Boolean);
const CONCEPT = { score_threshold_detection: 0.2, new_det_thresh: 0.2, ...JSON.parse(args.concept!) };

/** Frame t, made when asked for: a textured background, a disc circling and a bar sweeping back and forth. */
function frameAt(t: number): Uint8Array {
  const rgb = new Uint8Array(W * H * 3);
  const cx = W / 2 + (W / 4) * Math.cos(t / 15);
  const cy = H / 2 + (H / 4) * Math.sin(t / 15);
  const bx = ((t * 3) % (2 * W)) < W ? (t * 3) % W : W - ((t * 3) % W);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      let px = [30 + ((x * 7 + y * 3 + t) % 40), 40 + ((x * 3 + y * 5) % 30), 60];
      if ((x - cx) ** 2 + (y - cy) ** 2 < 18 ** 2) px = [220, 60, 40];
      if (Math.abs(x - bx) <= 10 && y >= H * 0.55 && y <= H * 0.9) px = [40, 200, 90];
      rgb[i] = px[0]!;
      rgb[i + 1] = px[1]!;
      rgb[i + 2] = px[2]!;
    }
  }
  return rgb;
}

/** A long video made frame by frame on demand (holds no frame). */
class SyntheticVideo implements FrameSource {
  readonly info: VideoInfo = { totalFrames: FRAMES, fps: 30, width: W, height: H, durationSeconds: FRAMES / 30 };
  readonly path = 'synthetic';
  async frame(index: number): Promise<RgbFrame> {
    return { rgb: frameAt(index), width: W, height: H };
  }
  cachedBytes(): number {
    return 0;
  }
  async close(): Promise<void> {}
}

const MiB = 2 ** 20;
const gc = (globalThis as { gc?: () => void }).gc;

interface Sample {
  frame: number;
  rssMiB: number;
  heapUsedMiB: number;
  externalMiB: number;
  sessionMemoryMiB: number;
  /** The C heap (glibc mallinfo2): bytes in use and bytes free but held (null off glibc). */
  nativeInUseMiB: number | null;
  nativeFreeMiB: number | null;
  /** Objects in this frame's output / objects the session tracks now. */
  objects: number;
  tracked: number;
  seconds: number;
}

async function main() {
  const { bundle } = await fixture();
  const model = await Sam3Model.load(bundle, { threads: Number(args.threads), concept: CONCEPT });
  if (Number(args['trim-ms']) > 0) keepNativeHeapTrimmed({ intervalMs: Number(args['trim-ms']) });
  const options: { memoryWindow?: number; featureCacheBytes?: number } = {};
  if (args['memory-window']) options.memoryWindow = Number(args['memory-window']);
  if (args['feature-cache-mib'] !== undefined) options.featureCacheBytes = Number(args['feature-cache-mib']) * MiB;
  const session = await model.openVideo(new SyntheticVideo(), options);
  for (const p of PROMPTS) await session.addConcept(p);
  const samples: Sample[] = [];
  const objectCounts: number[] = [];
  const t0 = performance.now();
  let seen = 0;
  const take = (objects: number) => {
    gc?.(); // JS garbage does not count as growth: only what survives a full collection
    const m = process.memoryUsage();
    const h = heapStats();
    const s: Sample = {
      frame: seen,
      rssMiB: m.rss / MiB,
      heapUsedMiB: m.heapUsed / MiB,
      externalMiB: m.external / MiB,
      sessionMemoryMiB: session.status().memoryBytes / MiB,
      nativeInUseMiB: h ? h.inUseBytes / MiB : null,
      nativeFreeMiB: h ? h.freeBytes / MiB : null,
      objects,
      tracked: session.status().objects.length,
      seconds: (performance.now() - t0) / 1000,
    };
    samples.push(s);
    console.log(`frame ${String(s.frame).padStart(5)}  rss ${s.rssMiB.toFixed(1)} MiB  heap ${s.heapUsedMiB.toFixed(1)}  external ${s.externalMiB.toFixed(1)}  session ${s.sessionMemoryMiB.toFixed(1)} MiB  native in use ${s.nativeInUseMiB?.toFixed(1)} free ${s.nativeFreeMiB?.toFixed(1)}  objects ${objects} (tracked ${s.tracked})  ${s.seconds.toFixed(0)} s`);
  };
  const start = process.memoryUsage().rss / MiB;
  console.log(`tiny model ${bundle}, ${FRAMES} frames of ${W}x${H}, concepts ${JSON.stringify(PROMPTS)}, ${JSON.stringify(CONCEPT)}, memoryWindow ${options.memoryWindow ?? 'default (16)'}, feature cache ${options.featureCacheBytes === undefined ? 'default (256 MiB)' : `${options.featureCacheBytes / MiB} MiB`}; rss before propagating ${start.toFixed(1)} MiB`);
  try {
    for await (const f of session.propagate({ direction: 'forward', startFrameIndex: 0 })) {
      seen++;
      objectCounts.push(f.objects.length);
      if (seen % EVERY === 0) take(f.objects.length);
    }
  } finally {
    await session.dispose();
    model.dispose();
  }
  if (samples.length < 2) throw new Error(`too few samples: ${samples.length} (frames ${FRAMES}, every ${EVERY})`);
  // Growth after the first sample (frame EVERY: past the first memory window and hotstart buffer),
  // and the least-squares slope over every sample from there.
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  const n = samples.length;
  const mx = samples.reduce((a, s) => a + s.frame, 0) / n;
  const my = samples.reduce((a, s) => a + s.rssMiB, 0) / n;
  const slope = samples.reduce((a, s) => a + (s.frame - mx) * (s.rssMiB - my), 0) / samples.reduce((a, s) => a + (s.frame - mx) ** 2, 0);
  const growthMiB = last.rssMiB - first.rssMiB;
  const perFrameKiB = (growthMiB * 1024) / (last.frame - first.frame);
  const at = (f: number) => samples.find((s) => s.frame === f)?.rssMiB;
  const summary = {
    rssBeforeMiB: start,
    rssAtMiB: Object.fromEntries([100, 500, 1000, 2000].map((f) => [f, at(f)])),
    growthMiB,
    growthPerFrameKiB: perFrameKiB,
    slopeKiBPerFrame: slope * 1024,
    sessionMemoryGrowthMiB: last.sessionMemoryMiB - first.sessionMemoryMiB,
    heapGrowthMiB: last.heapUsedMiB - first.heapUsedMiB,
    nativeInUseGrowthMiB: last.nativeInUseMiB === null || first.nativeInUseMiB === null ? null : last.nativeInUseMiB - first.nativeInUseMiB,
    nativeFreeGrowthMiB: last.nativeFreeMiB === null || first.nativeFreeMiB === null ? null : last.nativeFreeMiB - first.nativeFreeMiB,
    objects: { min: Math.min(...objectCounts), max: Math.max(...objectCounts), last: objectCounts[objectCounts.length - 1] },
    seconds: (performance.now() - t0) / 1000,
    gcExposed: gc !== undefined,
  };
  console.log(`\nRSS growth from frame ${first.frame} to ${last.frame}: ${growthMiB.toFixed(1)} MiB (${perFrameKiB.toFixed(2)} KiB a frame; least-squares slope ${(slope * 1024).toFixed(2)} KiB a frame)`);
  console.log(`session memory ${first.sessionMemoryMiB.toFixed(1)} -> ${last.sessionMemoryMiB.toFixed(1)} MiB, JS heap ${first.heapUsedMiB.toFixed(1)} -> ${last.heapUsedMiB.toFixed(1)} MiB, objects per frame ${summary.objects.min}-${summary.objects.max}`);
  if (args.out) {
    const doc = {
      case: 'concept tracking memory soak (tiny model, frames made on demand)',
      machine: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), node: process.version, torchNative: runtimeInfo().torchVersion, threads: Number(args.threads) },
      bundle: path.relative(root, bundle),
      video: { width: W, height: H, frames: FRAMES },
      prompts: PROMPTS,
      concept: CONCEPT,
      memoryWindow: options.memoryWindow ?? null,
      featureCacheMiB: options.featureCacheBytes === undefined ? null : options.featureCacheBytes / MiB,
      every: EVERY,
      summary,
      samples,
      // How many output frames had each number of objects.
      objectsPerFrameHistogram: objectCounts.reduce<Record<number, number>>((h, k) => ((h[k] = (h[k] ?? 0) + 1), h), {}),
    };
    writeFileSync(args.out, JSON.stringify(doc, null, 2) + '\n');
    console.log(`wrote ${path.relative(root, args.out)}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
