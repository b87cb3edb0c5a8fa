/**
 * Interactive segmentation parity: Sam3Model.segmentInteractive (our ViT + tracker neck + traced
 * prompt encoder and mask decoder) against transformers' eager Sam3TrackerModel on the same tiny
 * random weights and image — one click, clicks with a negative one, a box, a box with clicks, a
 * second and third call fed the previous call's low-res logits, multimask on and off, and three
 * objects in one batched call (each run alone on the Python side). Masks equal or within a few
 * boundary pixels, IoU scores and object scores within 1e-4.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { type Box, type ImageFeatures, type InteractivePrompt, type InteractiveSegmentation, Sam3Model } from '../src/index.js';
import { fixture, pixelDiff, pngImage, py, tempDir } from './helpers.js';

const W = 96;
const H = 72;
/** Pixels of one mask allowed to differ: a logit within float32 rounding of 0 can flip at the boundary. */
const MAX_PIXELS = 3;
const TOL = 1e-4;

interface RefObject {
  points?: number[][];
  labels?: number[];
  box?: number[];
  mask_from?: [number, number];
}
interface Call {
  multimask: boolean;
  objects: Array<{ points?: Array<[number, number]>; labels?: Array<0 | 1>; box?: Box; maskFrom?: [number, number] }>;
}

const CASES: Record<string, Call[]> = {
  one_click: [{ multimask: true, objects: [{ points: [[0.4, 0.45]], labels: [1] }] }],
  one_click_single_mask: [{ multimask: false, objects: [{ points: [[0.4, 0.45]], labels: [1] }] }],
  clicks_with_negative: [{ multimask: true, objects: [{ points: [[0.3, 0.3], [0.55, 0.5], [0.9, 0.85]], labels: [1, 1, 0] }] }],
  box: [{ multimask: true, objects: [{ box: [0.15, 0.2, 0.5, 0.55] }] }],
  box_and_clicks: [{ multimask: false, objects: [{ box: [0.15, 0.2, 0.5, 0.55], points: [[0.3, 0.4], [0.6, 0.7]], labels: [1, 0] }] }],
  refine_with_logits: [
    { multimask: true, objects: [{ points: [[0.4, 0.45]], labels: [1] }] },
    { multimask: false, objects: [{ points: [[0.4, 0.45], [0.8, 0.2]], labels: [1, 0], maskFrom: [0, 0] }] },
    { multimask: true, objects: [{ points: [[0.4, 0.45], [0.8, 0.2], [0.5, 0.6]], labels: [1, 0, 1], maskFrom: [1, 0] }] },
  ],
  three_objects_batched: [
    {
      multimask: true,
      objects: [{ points: [[0.2, 0.3]], labels: [1] }, { points: [[0.7, 0.6]], labels: [1] }, { box: [0.5, 0.1, 0.4, 0.3] }],
    },
  ],
};

interface RefOut {
  cases: Record<string, Array<{ objects: Array<{ masks: Array<{ size: [number, number]; counts: string }>; iou_scores: number[]; object_score_logit: number }> }>>;
}

let model: Sam3Model;
let features: ImageFeatures;
let reference: RefOut;
/** Worst differences seen, reported at the end. */
const worst = { pixels: 0, iou: 0, logit: 0, masks: 0, identical: 0 };

before(async () => {
  const { checkpoint, bundle } = await fixture();
  const dir = await tempDir('sam3-interactive-');
  const png = await pngImage(W, H, 5);
  await writeFile(path.join(dir, 'image.png'), png);
  const doc = {
    image: 'image.png',
    cases: Object.entries(CASES).map(([name, calls]) => ({
      name,
      calls: calls.map((c) => ({
        multimask: c.multimask,
        objects: c.objects.map((o) => {
          const r: RefObject = {};
          if (o.points) [r.points, r.labels] = [o.points, o.labels!];
          // Corners computed as the library computes them (float64 x + w, then float32 in both).
          if (o.box) r.box = [o.box[0], o.box[1], o.box[0] + o.box[2], o.box[1] + o.box[3]];
          if (o.maskFrom) r.mask_from = o.maskFrom;
          return r;
        }),
      })),
    })),
  };
  await writeFile(path.join(dir, 'cases.json'), JSON.stringify(doc));
  const [m] = await Promise.all([
    Sam3Model.load(bundle, { threads: 2 }),
    py(['scripts/make_interactive_reference.py', '--checkpoint', checkpoint, '--cases', path.join(dir, 'cases.json'), '--out', path.join(dir, 'out.json')]),
  ]);
  model = m;
  reference = JSON.parse(await readFile(path.join(dir, 'out.json'), 'utf8')) as RefOut;
  features = await model.encodeImage(png);
});

after(() => {
  console.log(`interactive parity: ${worst.identical}/${worst.masks} masks identical, worst ${worst.pixels} pixels; IoU max diff ${worst.iou.toExponential(2)}; object score logit max diff ${worst.logit.toExponential(2)}`);
  features?.dispose();
  model?.dispose();
});

for (const [name, calls] of Object.entries(CASES)) {
  test(`interactive parity: ${name}`, async () => {
    const ours: InteractiveSegmentation[][] = [];
    try {
      for (const [ci, call] of calls.entries()) {
        const prompts: InteractivePrompt[] = call.objects.map((o) => {
          const p: InteractivePrompt = {};
          if (o.points) p.points = o.points.map((point, i) => ({ point, label: o.labels![i]! }));
          if (o.box) p.box = o.box;
          if (o.maskFrom) p.maskInput = ours[o.maskFrom[0]]![o.maskFrom[1]]!.maskInput;
          return p;
        });
        const got = await model.segmentInteractiveBatch(features, prompts, { multimask: call.multimask });
        ours.push(got);
        const want = reference.cases[name]![ci]!.objects;
        assert.equal(got.length, want.length);
        got.forEach((g, oi) => {
          const w = want[oi]!;
          const where = `${name} call ${ci} object ${oi}`;
          assert.equal(g.masks.length, call.multimask ? 3 : 1, `${where}: mask count`);
          assert.equal(g.masks.length, w.masks.length, `${where}: mask count vs reference`);
          g.iouScores.forEach((s, k) => {
            worst.iou = Math.max(worst.iou, Math.abs(s - w.iou_scores[k]!));
            assert.ok(Math.abs(s - w.iou_scores[k]!) <= TOL, `${where} mask ${k}: iou ${s} vs ${w.iou_scores[k]}`);
          });
          const logit = Math.log(g.objectScore / (1 - g.objectScore));
          worst.logit = Math.max(worst.logit, Math.abs(logit - w.object_score_logit));
          assert.ok(Math.abs(logit - w.object_score_logit) <= 1e-3, `${where}: object score logit ${logit} vs ${w.object_score_logit}`);
          g.masks.forEach((m, k) => {
            assert.deepEqual(m.size, [H, W]);
            const diff = pixelDiff(m.counts, w.masks[k]!.counts, H, W);
            worst.masks++;
            if (diff === 0) worst.identical++;
            worst.pixels = Math.max(worst.pixels, diff);
            assert.ok(diff <= MAX_PIXELS, `${where} mask ${k}: ${diff} pixels differ (at most ${MAX_PIXELS})`);
          });
        });
      }
    } finally {
      for (const call of ours) for (const r of call) r.maskInput.dispose();
    }
  });
}

test('interactive: the first call adds the tracker features to the image features, once', async () => {
  const f = await model.encodeImage(await pngImage(W, H, 6));
  try {
    const before = f.bytes;
    const a = await model.segmentInteractive(f, { points: [{ point: [0.5, 0.5], label: true }] });
    const grown = f.bytes;
    assert.ok(grown > before, `bytes ${before} -> ${grown}`);
    const b = await model.segmentInteractive(f, { points: [{ point: [0.5, 0.5], label: 1 }], maskInput: a.maskInput });
    assert.equal(f.bytes, grown, 'the second call reuses them');
    a.maskInput.dispose();
    b.maskInput.dispose();
    // Features encoded without the ViT output cannot serve clicks: a clear error, not a crash.
    const bare = await model.encodeImages([await pngImage(W, H, 7)], { keepBackbone: false });
    await assert.rejects(model.segmentInteractive(bare[0]!, { points: [{ point: [0.5, 0.5], label: 1 }] }), /encoded without it: encode the image with keepBackbone/);
    bare[0]!.dispose();
  } finally {
    f.dispose();
  }
});

test('interactive: bad prompts are refused with what to change', async () => {
  const click = { point: [0.5, 0.5] as [number, number], label: 1 as const };
  await assert.rejects(model.segmentInteractive(features, {}), /has no points and no box/);
  await assert.rejects(model.segmentInteractive(features, { points: [{ point: [1.2, 0.5], label: 1 }] }), /outside the image/);
  await assert.rejects(model.segmentInteractive(features, { points: [{ point: [0.5, 0.5], label: 2 as never }] }), /label must be true or 1/);
  await assert.rejects(model.segmentInteractive(features, { box: [0.5, 0.5, 0.6, 0.2] }), /outside the image/);
  const r = await model.segmentInteractive(features, { points: [click] });
  r.maskInput.dispose();
  await assert.rejects(model.segmentInteractive(features, { points: [click], maskInput: r.maskInput }), /has been disposed/);
  await assert.rejects(model.segmentInteractive(features, { points: [click], maskInput: {} as never }), /must be the maskInput/);
});
