/**
 * Parity: our pipeline (sharp decode, libtorch preprocessing, traced pieces, native post-processing
 * and RLE) against transformers' eager Sam3Model on the same tiny random weights, with each query run
 * on its own in Python and batched on our side.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type Prompt, Sam3Model, type Segmentation } from '../src/index.js';
import { type ReferenceCase, type ReferenceOutput, type ReferenceQuery, fixture, jpegImage, pixelDiff, pngImage, reference, tempDir } from './helpers.js';

const SCORE_TOL = 1e-4;
const BOX_TOL = 1e-4;
// Masks are binarised after a bilinear upsample; a logit within float rounding of the 0.5 cut-off can
// flip a pixel. Allowed flipped pixels per mask:
const MASK_PIXEL_TOL = 4;

interface Tolerance {
  score: number;
  box: number;
  maskPixels: number;
}
const FLOAT32: Tolerance = { score: SCORE_TOL, box: BOX_TOL, maskPixels: MASK_PIXEL_TOL };
// A bundle exported in bfloat16 (as for GPUs) against transformers' Sam3Model in bfloat16: boxes come
// out of bfloat16 arithmetic (one step is 1/256 near 0.5), and our pieces round in a few other places
// than eager does (the FPN's folded sub-pixel convolutions round once where eager rounds thrice).
const BFLOAT16: Tolerance = { score: 2e-3, box: 8e-3, maskPixels: 64 };
/**
 * And our bfloat16 masks must be about as close to the float32 reference as transformers' bfloat16
 * masks are: per mask at most 2x their pixel error + 24, over all masks at most 1.5x theirs.
 */
const BF16_VS_F32 = { perMaskFactor: 2, perMaskPixels: 24, totalFactor: 1.5 };

/** Pixels between a mask and the closest float32 reference mask of a near-equal score. */
function offFloat32(counts: string, score: number, f32: ReferenceQuery, h: number, w: number): number {
  let best = Infinity;
  f32.scores.forEach((s, k) => {
    if (Math.abs(s - score) <= 1e-2) best = Math.min(best, pixelDiff(counts, f32.masks[k]!.counts, h, w));
  });
  return best;
}

interface Case {
  name: string;
  image: string;
  prompts: Prompt[];
}

const cases: Case[] = [
  { name: 'text', image: 'square', prompts: [{ text: 'a yellow disc' }] },
  { name: 'boxes', image: 'square', prompts: [{ boxes: [{ box: [0.1, 0.2, 0.3, 0.25] }, { box: [0.55, 0.5, 0.4, 0.45] }] }] },
  { name: 'text+boxes', image: 'square', prompts: [{ text: 'rectangle', boxes: [{ box: [0.2, 0.1, 0.5, 0.6] }] }] },
  { name: 'negative', image: 'square', prompts: [{ text: 'shape', boxes: [{ box: [0.1, 0.1, 0.3, 0.3] }, { box: [0.6, 0.6, 0.3, 0.35], label: false }] }] },
  {
    name: 'batched',
    image: 'square',
    prompts: [{ text: 'cat' }, { text: 'a red car on the street' }, { text: 'cat', boxes: [{ box: [0.3, 0.3, 0.2, 0.2] }] }, { text: 'DOG!' }],
  },
  {
    // Box queries with different box counts share one head pass: the shorter rows are padded, and
    // must give what each query gives on its own (the reference runs each alone, unpadded).
    name: 'padded-boxes',
    image: 'square',
    prompts: [
      { text: 'square', boxes: [{ box: [0.1, 0.1, 0.3, 0.3] }] },
      { text: 'disc', boxes: [{ box: [0.5, 0.5, 0.3, 0.3] }, { box: [0.05, 0.6, 0.2, 0.3] }, { box: [0.6, 0.05, 0.35, 0.2], label: false }] },
      { boxes: [{ box: [0.2, 0.2, 0.6, 0.6] }, { box: [0.7, 0.7, 0.25, 0.25], label: false }] },
    ],
  },
  { name: 'non-square', image: 'wide', prompts: [{ text: 'a blue square' }, { boxes: [{ box: [0.05, 0.1, 0.5, 0.8] }] }] },
  { name: 'exif', image: 'exif', prompts: [{ text: 'yellow' }, { boxes: [{ box: [0.2, 0.1, 0.6, 0.3] }] }] },
];

function toReferenceCase(c: Case): ReferenceCase {
  return {
    name: c.name,
    image: c.image,
    threshold: 0,
    queries: c.prompts.map((p) => ({
      text: p.text ?? null,
      boxes: p.boxes ? p.boxes.map((b) => b.box) : null,
      labels: p.boxes ? p.boxes.map((b) => b.label !== false) : null,
    })),
  };
}

/** Worst differences seen, printed at the end so a run shows how close parity really is. */
const worst = { score: 0, box: 0, maskPixels: 0, masks: 0, masksEqual: 0 };
const worstBf16 = { ...worst };

/** Compares one query's detections, matched by score order, within the tolerances. */
function assertMatches(ours: Segmentation, ref: ReferenceQuery, where: string, tol: Tolerance = FLOAT32, seen = worst): number[] {
  const worst = seen;
  const [SCORE_TOL, BOX_TOL, MASK_PIXEL_TOL] = [tol.score, tol.box, tol.maskPixels];
  assert.equal(ours.numMasks, ref.scores.length, `${where}: number of detections`);
  const pairs: number[] = [];
  for (let i = 0; i < ref.scores.length; i++) {
    // Equal-score detections may come in either order; pair with the closest reference box among near-equal scores.
    let j = i;
    let best = Infinity;
    for (let k = 0; k < ref.scores.length; k++) {
      if (Math.abs(ref.scores[k]! - ours.scores[i]!) > SCORE_TOL) continue;
      const d = Math.max(...ours.boxes[i]!.map((v, t) => Math.abs(v - ref.boxes[k]![t]!)));
      if (d < best) {
        best = d;
        j = k;
      }
    }
    worst.score = Math.max(worst.score, Math.abs(ours.scores[i]! - ref.scores[j]!));
    worst.box = Math.max(worst.box, ...ours.boxes[i]!.map((v, t) => Math.abs(v - ref.boxes[j]![t]!)));
    assert.ok(Math.abs(ours.scores[i]! - ref.scores[j]!) <= SCORE_TOL, `${where}[${i}]: score ${ours.scores[i]} vs ${ref.scores[j]}`);
    for (let t = 0; t < 4; t++) {
      assert.ok(Math.abs(ours.boxes[i]![t]! - ref.boxes[j]![t]!) <= BOX_TOL, `${where}[${i}]: box ${ours.boxes[i]} vs ${ref.boxes[j]}`);
    }
    const m = ours.masks[i]!;
    assert.deepEqual(m.size, ref.masks[j]!.size, `${where}[${i}]: mask size`);
    const diff = pixelDiff(m.counts, ref.masks[j]!.counts, m.size[0], m.size[1]);
    worst.maskPixels = Math.max(worst.maskPixels, diff);
    worst.masks++;
    if (diff === 0) worst.masksEqual++;
    assert.ok(diff <= MASK_PIXEL_TOL, `${where}[${i}]: ${diff} mask pixels differ`);
    pairs.push(j);
  }
  return pairs;
}

/** The cases' images, into `images` and as files for the Python reference; returns the files. */
async function writeImages(images: Record<string, Buffer>): Promise<Record<string, string>> {
  const dir = await tempDir();
  images.square = await jpegImage(128, 128, 1);
  images.wide = await pngImage(160, 96, 2);
  // Stored 120x80 with EXIF orientation 6 (rotate 90° clockwise): shown as 80x120.
  images.exif = await jpegImage(120, 80, 3, 6);
  const files: Record<string, string> = {};
  for (const [name, buf] of Object.entries(images)) {
    files[name] = path.join(dir, `${name}.${name === 'wide' ? 'png' : 'jpg'}`);
    writeFileSync(files[name]!, buf);
  }
  return files;
}

describe('parity with transformers eager Sam3Model', () => {
  let model: Sam3Model;
  let ref: ReferenceOutput;
  let bundle: string;
  const images: Record<string, Buffer> = {};

  before(async () => {
    const fx = await fixture();
    bundle = fx.bundle;
    const files = await writeImages(images);
    [ref, model] = await Promise.all([reference(fx.checkpoint, files, cases.map(toReferenceCase)), Sam3Model.load(fx.bundle, { threads: 2, headBatch: 16 })]);
  });

  after(() => {
    model?.dispose();
    console.log(`# parity: max |score diff| ${worst.score.toExponential(2)}, max |box diff| ${worst.box.toExponential(2)}, ` +
      `${worst.masksEqual}/${worst.masks} masks identical, max ${worst.maskPixels} differing mask pixels`);
  });

  for (const c of cases) {
    it(`${c.name}: scores, boxes and masks match at threshold 0`, async () => {
      const features = await model.encodeImage(images[c.image]!);
      try {
        const expected = ref.cases[c.name]!;
        assert.deepEqual({ width: features.width, height: features.height }, expected.image_size);
        // All prompts of a case in ONE call (one batched head pass per prompt kind: headBatch 16).
        const results = await model.segmentBatch(features, c.prompts, { threshold: 0 });
        assert.equal(results.length, c.prompts.length);
        results.forEach((r, q) => {
          assert.deepEqual(r.imageSize, expected.image_size);
          assertMatches(r, expected.queries[q]!, `${c.name} query ${q}`);
        });
      } finally {
        features.dispose();
      }
    });
  }

  it('one prompt per head pass (headBatch 1, the CPU default) gives the same answers', async () => {
    const single = await Sam3Model.load(bundle, { threads: 2, headBatch: 1, warmup: false });
    try {
      const multi = cases.filter((c) => c.prompts.length > 1);
      assert.ok(multi.length >= 2, 'cases with several prompts exist');
      for (const c of multi) {
        const features = await single.encodeImage(images[c.image]!);
        try {
          const results = await single.segmentBatch(features, c.prompts, { threshold: 0 });
          results.forEach((r, q) => assertMatches(r, ref.cases[c.name]!.queries[q]!, `${c.name} query ${q} (headBatch 1)`));
        } finally {
          features.dispose();
        }
      }
    } finally {
      single.dispose();
    }
  });

  it('encodeImages runs encodeBatch images a pass (1 on a CPU by default), and every pass gives the reference answers', async () => {
    assert.equal(model.encodeBatch, 1, 'the CPU default');
    const three = await Sam3Model.load(bundle, { threads: 2, headBatch: 16, encodeBatch: 3, warmup: false });
    try {
      assert.equal(three.encodeBatch, 3);
      const names = ['square', 'wide', 'exif'] as const;
      for (const [m, passes, label] of [[model, 3, 'encodeBatch 1'], [three, 1, 'encodeBatch 3']] as const) {
        const jobs = m.info().engine.completed;
        const features = await m.encodeImages(names.map((n) => images[n]!));
        try {
          assert.equal(m.info().engine.completed - jobs, passes, `${label}: encoder passes for 3 images`);
          for (const [k, name] of names.entries()) {
            const c = cases.find((x) => x.image === name)!;
            const results = await m.segmentBatch(features[k]!, c.prompts, { threshold: 0 });
            results.forEach((r, q) => assertMatches(r, ref.cases[c.name]!.queries[q]!, `${c.name} query ${q} (${label}, image ${k} of 3)`));
          }
        } finally {
          for (const f of features) f.dispose();
        }
      }
    } finally {
      three.dispose();
    }
  });

  it('threshold keeps exactly the reference detections above it, and a high one finds nothing', async () => {
    const features = await model.encodeImage(images.square!);
    try {
      const q = ref.cases.text!.queries[0]!;
      const sorted = [...q.all_scores].sort((a, b) => b - a);
      // Cut in the middle of the widest gap among the top scores, far from any score.
      let cut = 0;
      let gap = -1;
      for (let i = 0; i + 1 < Math.min(sorted.length, 10); i++) {
        if (sorted[i]! - sorted[i + 1]! > gap) {
          gap = sorted[i]! - sorted[i + 1]!;
          cut = (sorted[i]! + sorted[i + 1]!) / 2;
        }
      }
      assert.ok(gap > 10 * SCORE_TOL, 'the reference scores have a usable gap');
      const kept = await model.segment(features, cases[0]!.prompts[0]!, { threshold: cut });
      assert.equal(kept.numMasks, sorted.filter((s) => s > cut).length);
      assert.ok(kept.numMasks > 0 && kept.numMasks < sorted.length);
      assert.ok(kept.scores.every((s) => s > cut));
      const none = await model.segment(features, cases[0]!.prompts[0]!, { threshold: Math.min(1, sorted[0]! + 0.01) });
      assert.equal(none.numMasks, 0);
      assert.deepEqual(none.masks, []);
      assert.deepEqual(none.boxes, []);
    } finally {
      features.dispose();
    }
  });

  it('a batched head pass where only some prompts find something: masks for those prompts alone, unchanged', async () => {
    // The pixel decoder runs only for the rows of a pass with a query above the threshold, on
    // those rows' visual features (bundle format 5). Cut each multi-prompt pass so that some of its
    // prompts keep detections and others keep none; every prompt must still give exactly the
    // reference detections above the cut (a row mapped to another row's pixel embeddings would
    // give another prompt's masks).
    const passes: [string, number[]][] = [
      ['batched', [0, 1, 3]], // its three text-only prompts share one pass (the text+box one has its own)
      ['padded-boxes', [0, 1, 2]],
    ];
    for (const [name, rows] of passes) {
      const c = cases.find((x) => x.name === name)!;
      const refq = ref.cases[name]!.queries;
      const tops = rows.map((q) => Math.max(...refq[q]!.scores));
      const lo = Math.min(...tops);
      const hi = Math.max(...tops);
      const pooled = rows.flatMap((q) => refq[q]!.scores).filter((s) => s >= lo && s <= hi).sort((a, b) => a - b);
      let cut = NaN;
      let gap = -1;
      for (let i = 0; i + 1 < pooled.length; i++) {
        if (pooled[i + 1]! - pooled[i]! > gap) {
          gap = pooled[i + 1]! - pooled[i]!;
          cut = (pooled[i]! + pooled[i + 1]!) / 2;
        }
      }
      // The cut sits more than SCORE_TOL from every reference score, so no score within tolerance crosses it.
      assert.ok(gap > 2 * SCORE_TOL, `${name}: the prompts' top scores leave a usable gap (${tops})`);
      const features = await model.encodeImage(images[c.image]!);
      try {
        const results = await model.segmentBatch(features, c.prompts, { threshold: cut });
        let found = 0;
        let empty = 0;
        for (const q of rows) {
          const all = refq[q]!;
          const keep = all.scores.map((s, i) => (s > cut ? i : -1)).filter((i) => i >= 0);
          if (keep.length > 0) found++;
          else empty++;
          const above = { ...all, scores: keep.map((i) => all.scores[i]!), boxes: keep.map((i) => all.boxes[i]!), masks: keep.map((i) => all.masks[i]!) };
          assertMatches(results[q]!, above, `${name} query ${q} at threshold ${cut.toFixed(4)}`);
        }
        assert.ok(found > 0 && empty > 0, `${name}: the cut leaves ${found} prompts with detections and ${empty} without`);
      } finally {
        features.dispose();
      }
    }
  });

  it('the split pixel decoder (pixel_skip once an image has had pixelSkipAfter prompts, then pixel_split) gives the reference masks', async () => {
    // Every case through the split form from its first prompt (pixelSkipAfter 0) and through the
    // whole decoder only (Infinity): both must match the reference. Then the default (2) on one
    // image asked one prompt at a time: the first two prompts decode with the whole decoder and
    // leave the features as they are, the third switches them over; every answer matches.
    const split = await Sam3Model.load(bundle, { threads: 2, headBatch: 16, pixelSkipAfter: 0, warmup: false });
    const whole = await Sam3Model.load(bundle, { threads: 2, headBatch: 16, pixelSkipAfter: Infinity, warmup: false });
    try {
      for (const [m, expectSkip, label] of [[split, true, 'pixelSkipAfter 0'], [whole, false, 'pixelSkipAfter Infinity']] as const) {
        for (const c of cases) {
          const features = await m.encodeImage(images[c.image]!);
          try {
            assert.equal(features.pixelSkip, false, `${label} ${c.name}: fresh features`);
            const bytes = features.bytes;
            const results = await m.segmentBatch(features, c.prompts, { threshold: 0 });
            results.forEach((r, q) => assertMatches(r, ref.cases[c.name]!.queries[q]!, `${c.name} query ${q} (${label})`));
            assert.equal(features.pixelSkip, expectSkip, `${label} ${c.name}: after segmenting`);
            assert.equal(features.bytes, bytes, 'the skip convolutions replace two levels of the same size');
          } finally {
            features.dispose();
          }
        }
      }
      const c = cases.find((x) => x.name === 'batched')!;
      const features = await model.encodeImage(images[c.image]!);
      try {
        const seen: boolean[] = [];
        for (let round = 0; round < 2; round++) {
          for (let q = 0; q < c.prompts.length; q++) {
            const [r] = await model.segmentBatch(features, [c.prompts[q]!], { threshold: 0 });
            assertMatches(r!, ref.cases[c.name]!.queries[q]!, `${c.name} query ${q}, one at a time, round ${round}`);
            seen.push(features.pixelSkip);
          }
        }
        assert.deepEqual(seen, [false, false, true, true, true, true, true, true]);
      } finally {
        features.dispose();
      }
      // A prompt that finds nothing runs no pixel decoder and does not count towards the switch.
      const quiet = await model.encodeImage(images.square!);
      try {
        for (let i = 0; i < 3; i++) assert.equal((await model.segment(quiet, { text: 'cat' }, { threshold: 1 })).numMasks, 0);
        assert.equal(quiet.pixelSkip, false);
      } finally {
        quiet.dispose();
      }
    } finally {
      split.dispose();
      whole.dispose();
    }
  });

  it('scores come sorted, masks are the original image size, boxes are normalised xywh', async () => {
    const features = await model.encodeImage(images.wide!);
    try {
      const r = await model.segment(features, { text: 'anything' }, { threshold: 0 });
      for (let i = 1; i < r.scores.length; i++) assert.ok(r.scores[i - 1]! >= r.scores[i]!);
      for (const m of r.masks) assert.deepEqual(m.size, [96, 160]);
      assert.equal(r.boxes.length, r.numMasks);
      assert.equal(ref.cases['non-square']!.image_size.width, 160);
    } finally {
      features.dispose();
    }
  });
});

describe('parity in bfloat16: a bundle exported in bfloat16 against transformers eager Sam3Model in bfloat16', () => {
  let model: Sam3Model;
  let ref: ReferenceOutput;
  let ref32: ReferenceOutput;
  const images: Record<string, Buffer> = {};

  before(async () => {
    const fx = await fixture(1, 112, 'bfloat16');
    const files = await writeImages(images);
    const refCases = cases.map(toReferenceCase);
    [ref, ref32, model] = await Promise.all([
      reference(fx.checkpoint, files, refCases, [], 'bfloat16'),
      reference(fx.checkpoint, files, refCases, [], 'float32'),
      Sam3Model.load(fx.bundle, { threads: 2, headBatch: 16 }),
    ]);
  });

  after(() => {
    model?.dispose();
    console.log(`# parity (bfloat16): max |score diff| ${worstBf16.score.toExponential(2)}, max |box diff| ${worstBf16.box.toExponential(2)}, ` +
      `${worstBf16.masksEqual}/${worstBf16.masks} masks identical, max ${worstBf16.maskPixels} differing mask pixels`);
  });

  it('the bundle says bfloat16; every case matches transformers in bfloat16, and is as close to float32 as it is', async () => {
    assert.equal(model.manifest.dtype, 'bfloat16');
    let ours32 = 0;
    let theirs32 = 0;
    for (const c of cases) {
      const features = await model.encodeImage(images[c.image]!);
      try {
        const results = await model.segmentBatch(features, c.prompts, { threshold: 0 });
        results.forEach((r, q) => {
          const where = `${c.name} query ${q} (bfloat16)`;
          const want = ref.cases[c.name]!.queries[q]!;
          const pairs = assertMatches(r, want, where, BFLOAT16, worstBf16);
          const f32 = ref32.cases[c.name]!.queries[q]!;
          pairs.forEach((j, i) => {
            const [h, w] = r.masks[i]!.size;
            const a = offFloat32(r.masks[i]!.counts, r.scores[i]!, f32, h, w);
            const b = offFloat32(want.masks[j]!.counts, want.scores[j]!, f32, h, w);
            ours32 += a;
            theirs32 += b;
            assert.ok(a <= BF16_VS_F32.perMaskFactor * b + BF16_VS_F32.perMaskPixels, `${where}[${i}]: ${a} pixels from float32, transformers' bfloat16 ${b}`);
          });
        });
      } finally {
        features.dispose();
      }
    }
    console.log(`# parity (bfloat16): mask pixels off the float32 reference: ours ${ours32}, transformers' bfloat16 ${theirs32}`);
    assert.ok(ours32 <= BF16_VS_F32.totalFactor * theirs32, `our bfloat16 masks are ${ours32} pixels off float32, transformers' ${theirs32}`);
  });
});
