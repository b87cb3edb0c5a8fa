/**
 * CPU time (user + system, process.cpuUsage) of N rounds of encode + two text segments on a bundle,
 * and the heap afterwards: compares glibc settings such as SAM3_MALLOC_MMAP_THRESHOLD run by run.
 *
 *   SAM3_MALLOC_MMAP_THRESHOLD=262144 node --import tsx bench/native-heap-cpu.ts 5 .cache/bench/bundle-cpu
 */
import sharp from 'sharp';
import { Sam3Model, heapStats } from '../src/index.js';
const N = Number(process.argv[2] ?? 6);
const model = await Sam3Model.load(process.argv[3]!, { device: 'cpu', threads: 2 });
const w = 1008, h = 1008; const rgb = Buffer.alloc(w * h * 3);
for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 2654435761) >>> 24;
const png = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
{ const f = await model.encodeImage(png); await model.segment(f, { text: 'cat' }); f.dispose(); }
const c0 = process.cpuUsage(); const t0 = performance.now();
for (let i = 0; i < N; i++) { const f = await model.encodeImage(png); await model.segment(f, { text: 'cat' }); await model.segment(f, { text: 'dog' }); f.dispose(); }
const c = process.cpuUsage(c0); const wall = performance.now() - t0;
const hs = heapStats();
console.log(JSON.stringify({ mode: process.env.SAM3_MALLOC_MMAP_THRESHOLD ?? 'default', cpuMsPerRound: (c.user + c.system) / 1000 / N, sysMsPerRound: c.system / 1000 / N, wallMsPerRound: wall / N, rssMiB: process.memoryUsage().rss / 2 ** 20, thr: hs?.mmapThresholdBytes }));
model.dispose();
