/**
 * `npm run bench`: each case runs our side and Python transformers' eager side in the same run, on
 * the same weights, image and thread count, and writes bench/results/<case>.json with every sample.
 *
 *   npm run bench [-- --cases latency,prompts,cache,rle] [--runs 5] [--threads 2] [--device cpu|cuda]
 *
 * The model is a mid-size random SAM 3 at 1008x1008 (make_tiny_checkpoint.py --preset bench), built
 * and exported once into .cache/bench/. Medians after warm-up; ratio = ours / theirs.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';

import { Sam3Model, encodeRle, runtimeInfo } from '../src/index.js';
import { jpegImage, py, root, tempDir } from '../tests/helpers.js';

const exec = promisify(execFile);

const { values: args } = parseArgs({
  options: {
    cases: { type: 'string', default: 'latency,prompts,cache,rle' },
    runs: { type: 'string', default: '5' },
    threads: { type: 'string', default: String(Math.min(os.availableParallelism(), 2)) },
    device: { type: 'string', default: 'cpu' },
  },
});
const RUNS = Number(args.runs);
const THREADS = Number(args.threads);
const DEVICE = args.device!;
const resultsDir = path.join(root, 'bench', 'results');

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function time(fn: () => Promise<unknown>, runs = RUNS, warmup = 1): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    samples.push((performance.now() - t0) / 1000);
  }
  return samples;
}

async function machine() {
  let cpu = 'unknown';
  try {
    cpu = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? cpu;
  } catch {}
  const pyv = (await exec(path.join(root, '.venv', 'bin', 'python'), ['-c', 'import torch, transformers; print(torch.__version__, transformers.__version__)'])).stdout.trim().split(' ');
  return {
    cpu,
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    torchNative: runtimeInfo().torchVersion,
    torchPython: pyv[0],
    transformers: pyv[1],
    device: DEVICE,
    threads: THREADS,
  };
}

interface Row {
  case: string;
  ours: number;
  theirs: number;
  target?: string;
}
const table: Row[] = [];

function write(name: string, doc: Record<string, unknown>) {
  mkdirSync(resultsDir, { recursive: true });
  writeFileSync(path.join(resultsDir, `${name}.json`), JSON.stringify(doc, null, 2) + '\n');
}

async function benchFixture() {
  const dir = path.join(root, '.cache', 'bench');
  const checkpoint = path.join(dir, 'checkpoint');
  const bundle = path.join(dir, `bundle-${DEVICE}`);
  if (!existsSync(path.join(checkpoint, 'config.json'))) {
    console.log('building the bench checkpoint (mid-size, 1008x1008)...');
    await py(['scripts/make_tiny_checkpoint.py', '--out', checkpoint, '--preset', 'bench', '--seed', '0']);
  }
  if (!existsSync(path.join(bundle, 'manifest.json'))) {
    console.log(`exporting the bench bundle for ${DEVICE}...`);
    const extra = DEVICE === 'cpu' ? [] : ['--device', DEVICE, '--dtype', 'bfloat16'];
    await py(['scripts/export_sam3.py', '--checkpoint', checkpoint, '--out', bundle, ...extra], 3_600_000);
  }
  const config = JSON.parse(readFileSync(path.join(checkpoint, 'config.json'), 'utf8'));
  return { checkpoint, bundle, config };
}

async function python(args: string[]): Promise<{ samples: number[]; strings?: string[]; megapixels?: number }> {
  const dir = await tempDir('sam3-bench-');
  const out = path.join(dir, 'out.json');
  await py(['scripts/bench_python.py', '--threads', String(THREADS), '--out', out, ...args], 3_600_000);
  return JSON.parse(readFileSync(out, 'utf8'));
}

const PROMPTS = ['person', 'car', 'bicycle', 'dog', 'traffic light', 'red shirt', 'tree', 'building'];

async function main() {
  const cases = new Set(args.cases!.split(','));
  const info = await machine();
  const fx = cases.has('rle') && cases.size === 1 ? undefined : await benchFixture();
  const imageFile = path.join(await tempDir('sam3-bench-img-'), 'image.jpg');
  const image = await jpegImage(1280, 720, 5);
  writeFileSync(imageFile, image);
  const model = fx ? await Sam3Model.load(fx.bundle, { device: DEVICE, threads: THREADS }) : undefined;
  const common = { machine: info, model: fx ? { checkpoint: fx.checkpoint, config: fx.config, resolution: model!.manifest.resolution } : undefined, image: { width: 1280, height: 720, format: 'jpeg' }, runs: RUNS };

  if (model && cases.has('latency')) {
    // One image, one text prompt, from encoded JPEG bytes to RLE masks. Our text embedding is cached
    // after the warm-up (a server feature); Python encodes the text every time.
    const ours = await time(async () => {
      const f = await model.encodeImage(image);
      await model.segment(f, { text: 'person' }, { threshold: 0.5 });
      f.dispose();
    });
    const theirs = (await python(['--case', 'latency', '--checkpoint', fx!.checkpoint, '--image', imageFile, '--prompts', 'person', '--runs', String(RUNS)])).samples;
    write('latency', { ...common, case: 'image latency (library in-process vs transformers eager)', ours, theirs, median: { ours: median(ours), theirs: median(theirs) }, ratio: median(ours) / median(theirs) });
    table.push({ case: 'image latency, library (s)', ours: median(ours), theirs: median(theirs) });
  }

  if (model && cases.has('prompts')) {
    const doc: Record<string, unknown> = { ...common, case: 'N text prompts on one image' };
    for (const n of [1, 4, 8]) {
      const prompts = PROMPTS.slice(0, n);
      // Ours, cached features: encode once, all prompts in one batched head pass.
      const batched = await time(async () => {
        const f = await model.encodeImage(image);
        await model.segmentBatch(f, prompts.map((text) => ({ text })), { threshold: 0.5 });
        f.dispose();
      });
      // Ours, as N separate segment requests would run without a feature cache.
      const separate = await time(async () => {
        for (const text of prompts) {
          const f = await model.encodeImage(image);
          await model.segment(f, { text }, { threshold: 0.5 });
          f.dispose();
        }
      });
      const theirs = (await python(['--case', 'prompts', '--checkpoint', fx!.checkpoint, '--image', imageFile, '--prompts', prompts.join('|'), '--runs', String(RUNS)])).samples;
      doc[`n${n}`] = { batched, separate, theirs, median: { batched: median(batched), separate: median(separate), theirs: median(theirs) }, ratio: { batchedVsSeparate: median(batched) / median(separate), batchedVsTheirs: median(batched) / median(theirs) } };
      table.push({ case: `${n} prompts: batched vs Python vision-once (s)`, ours: median(batched), theirs: median(theirs) });
      table.push({ case: `${n} prompts: batched vs our ${n} separate (s)`, ours: median(batched), theirs: median(separate), target: n === 8 ? '<= 0.25' : undefined });
    }
    write('prompts', doc);
  }

  if (model && cases.has('cache')) {
    const f = await model.encodeImage(image);
    const hit = await time(() => model.segment(f, { text: 'person' }, { threshold: 0.5 }));
    const miss = await time(async () => {
      const g = await model.encodeImage(image);
      await model.segment(g, { text: 'person' }, { threshold: 0.5 });
      g.dispose();
    });
    f.dispose();
    write('cache', { ...common, case: 'repeat image: features reused (hit) vs encoded again (miss)', hit, miss, median: { hit: median(hit), miss: median(miss) }, ratio: median(hit) / median(miss) });
    table.push({ case: 'feature cache: hit vs miss (s)', ours: median(hit), theirs: median(miss), target: '<= 0.1' });
  }

  if (cases.has('rle')) {
    // Masks of the sizes a server returns: blobs at 720p and 1080p, and random noise (worst case).
    const masks: { h: number; w: number; data: Uint8Array }[] = [];
    let s = 7;
    const rand = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (const [h, w] of [[720, 1280], [1080, 1920], [480, 640]] as const) {
      for (let k = 0; k < 4; k++) {
        const data = new Uint8Array(h * w);
        const cx = rand() * w, cy = rand() * h, r = Math.min(h, w) * (0.1 + rand() * 0.3);
        for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = (x - cx) ** 2 + ((y - cy) * 1.3) ** 2 < r * r || Math.sin(x / 13) * Math.cos(y / 17) > 0.8 ? 1 : 0;
        masks.push({ h, w, data });
      }
    }
    const noise = new Uint8Array(480 * 640).map(() => (rand() < 0.5 ? 1 : 0));
    masks.push({ h: 480, w: 640, data: noise });
    const dir = await tempDir('sam3-bench-rle-');
    const file = path.join(dir, 'masks.json');
    writeFileSync(file, JSON.stringify(masks.map((m) => ({ h: m.h, w: m.w, data: Buffer.from(m.data).toString('latin1') }))));
    const theirsRun = await python(['--case', 'rle', '--masks', file, '--runs', String(RUNS)]);
    const ourStrings = masks.map((m) => encodeRle(m.data, m.h, m.w).counts);
    const equal = ourStrings.every((c, i) => c === theirsRun.strings![i]);
    if (!equal) throw new Error('RLE strings differ from pycocotools');
    const ours = await time(async () => {
      for (const m of masks) encodeRle(m.data, m.h, m.w);
    });
    const mp = theirsRun.megapixels!;
    const oursMps = mp / median(ours);
    const theirsMps = mp / median(theirsRun.samples);
    write('rle', { machine: info, case: 'RLE encode throughput (megapixels/s)', masks: masks.map((m) => [m.h, m.w]), megapixels: mp, stringsEqual: equal, ours: ours, theirs: theirsRun.samples, throughput: { ours: oursMps, theirs: theirsMps }, ratio: oursMps / theirsMps, note: 'both sides start from row-major masks and include the conversion to column order (np.asfortranarray for pycocotools)' });
    table.push({ case: 'RLE throughput (MP/s, higher is better)', ours: oursMps, theirs: theirsMps, target: '>= 2' });
  }

  model?.dispose();
  console.log(`\n${info.cpu}, ${info.cores} cores, threads ${THREADS}, device ${DEVICE}, ${RUNS} runs (medians)`);
  console.log('| case | ours | theirs | ours/theirs | target |\n|---|---|---|---|---|');
  for (const r of table) console.log(`| ${r.case} | ${r.ours.toFixed(4)} | ${r.theirs.toFixed(4)} | ${(r.ours / r.theirs).toFixed(3)} | ${r.target ?? ''} |`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
