/**
 * POST /api/v1/image/interactive against the real addon and the tiny bundle: results equal the
 * library's (so the route maps points, boxes, labels and mask_input faithfully), the image's cached
 * features serve concept prompts and clicks alike (one encode), mask_input handles refine the same
 * object, several objects run in one request, mask_format works on image and video endpoints, and
 * bad input (points outside [0, 1], no points and no box, an expired image_id, a stale or foreign
 * mask_input) is a clear 4xx.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { Sam3Model } from '../src/index.js';
import { pngImage } from './helpers.js';
import { type TestServer, b64, metric, metrics, postJson, startServer } from './server-helpers.js';

function close(a: number[], b: number[], tol = 1e-5) {
  assert.equal(a.length, b.length);
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= tol, `index ${i}: ${v} vs ${b[i]}`));
}

describe('interactive endpoint', () => {
  let srv: TestServer;
  let model: Sam3Model;
  let png: Buffer;
  let other: Buffer;

  before(async () => {
    srv = await startServer();
    model = srv.svc.pool()!.workers[0]!.model;
    png = await pngImage(64, 48, 3);
    other = await pngImage(64, 48, 4);
  });
  after(async () => srv?.close());

  const post = (body: unknown) => postJson(srv.base, '/api/v1/image/interactive', body);
  const encodes = async () => metric(await metrics(srv.base), 'sam3_inference_stage_seconds_count', { stage: 'encode' }) ?? 0;

  it('one click, then a refining click with mask_input: the library\'s results, on one encode shared with the concept endpoint', async () => {
    const before = await encodes();
    const seg = await postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts: [{ type: 'text', text: 'cat' }] });
    assert.equal(seg.status, 200);
    const first = await post({ image_id: seg.body.image_id, points: [{ point: [0.4, 0.5], label: 1 }] });
    assert.equal(first.status, 200, first.text);
    assert.equal(await encodes(), before + 1, 'the concept request and the click share one encode');
    assert.equal(first.body.masks.length, 3);
    assert.equal(first.body.iou_scores.length, 3);
    assert.equal(first.body.boxes.length, 3);
    assert.match(first.body.mask_input, /^mi_[0-9a-f]{32}$/);
    assert.deepEqual(first.body.image_size, { width: 64, height: 48 });
    assert.equal(first.body.cache_hit, true);
    assert.equal(first.body.image_id, seg.body.image_id);

    const second = await post({ image_id: seg.body.image_id, points: [{ point: [0.4, 0.5], label: true }, { point: [0.9, 0.1], label: false }], mask_input: first.body.mask_input, multimask_output: false });
    assert.equal(second.status, 200, second.text);
    assert.equal(second.body.masks.length, 1);

    // The library on the same image gives the same answers.
    const f = await model.encodeImage(png);
    try {
      const a = await model.segmentInteractive(f, { points: [{ point: [0.4, 0.5], label: 1 }] });
      const b = await model.segmentInteractive(f, { points: [{ point: [0.4, 0.5], label: 1 }, { point: [0.9, 0.1], label: 0 }], maskInput: a.maskInput, multimask: false });
      assert.deepEqual(first.body.masks, a.masks);
      close(first.body.iou_scores, a.iouScores);
      assert.deepEqual(second.body.masks, b.masks);
      close(second.body.iou_scores, b.iouScores);
      a.maskInput.dispose();
      b.maskInput.dispose();
    } finally {
      f.dispose();
    }
  });

  it('several objects in one request, with a box; polygon and png formats', async () => {
    const objects = [{ points: [{ point: [0.2, 0.3], label: 1 }] }, { box: [0.5, 0.2, 0.4, 0.5] }, { box: [0.1, 0.1, 0.3, 0.3], points: [{ point: [0.2, 0.2], label: 0 }] }];
    const r = await post({ image: b64(png), objects });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.objects.length, 3);
    assert.equal(r.body.masks, undefined, 'objects form: results only under objects');
    for (const o of r.body.objects) {
      assert.equal(o.masks.length, 3);
      assert.match(o.mask_input, /^mi_/);
    }
    const poly = await post({ image: b64(png), objects, mask_format: 'polygon' });
    assert.equal(poly.status, 200);
    const m = poly.body.objects[0].masks[0];
    assert.deepEqual(m.size, [48, 64]);
    assert.ok(Array.isArray(m.polygons) && Array.isArray(m.holes) && m.polygons.length === m.holes.length);
    const pngOut = await post({ image: b64(png), points: [{ point: [0.2, 0.3], label: 1 }], mask_format: 'png' });
    assert.equal(pngOut.status, 200);
    assert.ok(Buffer.from(pngOut.body.masks[0].png, 'base64').subarray(1, 4).toString() === 'PNG');
  });

  it('mask_format on the concept and video-free image endpoints; booleans and 0/1 alike on box labels', async () => {
    const a = await postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts: [{ type: 'box', box: [0.1, 0.1, 0.5, 0.5], label: 1 }], confidence_threshold: 0, mask_format: 'polygon' });
    assert.equal(a.status, 200, a.text);
    assert.ok(a.body.masks.length > 0 && 'polygons' in a.body.masks[0]);
    const b = await postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts: [{ type: 'box', box: [0.1, 0.1, 0.5, 0.5], label: true }], confidence_threshold: 0 });
    assert.equal(b.status, 200);
    assert.deepEqual(b.body.scores, a.body.scores, 'label 1 and label true are the same label');
    const bad = await postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts: [{ type: 'text', text: 'x' }], mask_format: 'svg' });
    assert.equal(bad.status, 400);
    assert.match(bad.body.error.message, /mask_format must be one of 'rle', 'polygon', 'png'/);
  });

  it('bad input is a clear 4xx', async () => {
    const cases: Array<[unknown, number, string, RegExp]> = [
      [{ image: b64(png), points: [{ point: [1.5, 0.5], label: 1 }] }, 400, 'validation_error', /outside the image/],
      [{ image: b64(png), points: [{ point: [0.5, 0.5], label: 2 }] }, 400, 'validation_error', /label must be true or 1/],
      [{ image: b64(png) }, 400, 'validation_error', /has no points and no box/],
      [{ image: b64(png), points: [] }, 400, 'validation_error', /has no points and no box/],
      [{ image: b64(png), objects: [{ points: [{ point: [0.5, 0.5], label: 1 }] }, {}] }, 400, 'validation_error', /objects\[1\] has no points and no box/],
      [{ image: b64(png), points: [{ point: [0.5, 0.5], label: 1 }], objects: [{ box: [0.1, 0.1, 0.2, 0.2] }] }, 400, 'validation_error', /not both/],
      [{ image_id: 'f'.repeat(64), points: [{ point: [0.5, 0.5], label: 1 }] }, 404, 'unknown_image_id', /not in the feature cache/],
      [{ image: b64(png), points: [{ point: [0.5, 0.5], label: 1 }], mask_input: `mi_${'0'.repeat(32)}` }, 404, 'unknown_mask_input', /is not held by the server/],
      [{ image: b64(png), points: [{ point: [0.5, 0.5], label: 1 }], mask_input: 'abc' }, 400, 'validation_error', /mask_input must be the 'mi_/],
      [{ image: b64(png), points: [{ point: [0.5, 0.5], label: 1 }], extra: 1 }, 400, 'validation_error', /extra/],
    ];
    for (const [body, status, code, message] of cases) {
      const r = await post(body);
      assert.equal(r.status, status, `${JSON.stringify(body).slice(0, 120)}: ${r.text}`);
      assert.equal(r.body.error.code, code);
      assert.match(r.body.error.message, message);
    }
    // A mask_input made on another image.
    const first = await post({ image: b64(other), points: [{ point: [0.5, 0.5], label: 1 }] });
    assert.equal(first.status, 200);
    const foreign = await post({ image: b64(png), points: [{ point: [0.5, 0.5], label: 1 }], mask_input: first.body.mask_input });
    assert.equal(foreign.status, 400);
    assert.match(foreign.body.error.message, /was made on another image/);
  });

  it('the cache counts the tracker features the first click adds', async () => {
    const img = await pngImage(64, 48, 9);
    const worker = srv.svc.pool()!.workers[0]!;
    const embed = await postJson(srv.base, '/api/v1/image/embed', { image: b64(img) });
    const bytesBefore = worker.cache!.stats().bytes;
    const r = await post({ image_id: embed.body.image_id, points: [{ point: [0.5, 0.5], label: 1 }] });
    assert.equal(r.status, 200);
    assert.ok(worker.cache!.stats().bytes > bytesBefore, 'the entry grew by the tracker features');
  });
});
