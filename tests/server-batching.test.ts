/**
 * Dynamic batching and load shedding: parallel requests are all answered correctly while their
 * images share encoder passes (visible in /metrics); a full queue answers 503 with Retry-After and
 * recovers; with two engines (cpu,cpu) work spreads over both and image ids find their device.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { Sam3Model } from '../src/index.js';
import { deviceBatchDefault } from '../src/index.js';
import { pixelDiff, pngImage } from './helpers.js';
import { type TestServer, b64, get, metric, metrics, postJson, startServer } from './server-helpers.js';

const text = (t: string) => ({ type: 'text', text: t });

describe('dynamic batching', () => {
  let srv: TestServer;
  let model: Sam3Model;
  before(async () => {
    srv = await startServer({ MAX_BATCH_SIZE: '4', BATCH_WAIT_MS: '100' });
    // The server's own model, called directly through the library API: the reference answer.
    model = srv.svc.pool()!.workers[0]!.model;
  });
  after(async () => srv?.close());

  it('N parallel requests are all answered correctly, in fewer encoder passes than images', async () => {
    const n = 8;
    const images = await Promise.all(Array.from({ length: n }, (_, i) => pngImage(40 + 4 * i, 48, 300 + i)));
    const m0 = await metrics(srv.base);
    const replies = await Promise.all(
      images.map((img, i) => postJson(srv.base, '/api/v1/image/segment', { image: b64(img), prompts: [text(i % 2 ? 'person' : 'car')], confidence_threshold: 0.05 })),
    );
    const m1 = await metrics(srv.base);
    for (const [i, r] of replies.entries()) {
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.image_size, { width: 40 + 4 * i, height: 48 });
      // Each answer is this image's own: the same as encoding it alone with the library.
      const f = await model.encodeImage(images[i]!);
      const [lib] = await model.segmentBatch(f, [{ text: i % 2 ? 'person' : 'car' }], { threshold: 0.05 });
      f.dispose();
      assert.equal(r.body.num_masks, lib!.numMasks, `request ${i}`);
      r.body.scores.forEach((s: number, k: number) => assert.ok(Math.abs(s - lib!.scores[k]!) < 1e-4, `request ${i} score ${k}`));
      r.body.masks.forEach((m: { counts: string }, k: number) => assert.ok(pixelDiff(m.counts, lib!.masks[k]!.counts, 48, 40 + 4 * i) <= 4, `request ${i} mask ${k}`));
    }
    const passes = (metric(m1, 'sam3_encode_batch_size_count') ?? 0) - (metric(m0, 'sam3_encode_batch_size_count') ?? 0);
    const encoded = (metric(m1, 'sam3_encode_batch_size_sum') ?? 0) - (metric(m0, 'sam3_encode_batch_size_sum') ?? 0);
    assert.equal(encoded, n);
    assert.ok(passes < n, `${n} images in ${passes} encoder passes`);
    assert.ok(passes >= n / 4, 'MAX_BATCH_SIZE bounds a pass');
    const singles = (metric(m1, 'sam3_encode_batch_size_bucket', { le: '1' }) ?? 0) - (metric(m0, 'sam3_encode_batch_size_bucket', { le: '1' }) ?? 0);
    assert.ok(singles < passes, 'at least one pass held more than one image');
    assert.ok((metric(m1, 'sam3_inference_stage_seconds_count', { stage: 'queue_wait' }) ?? 0) >= n);
  });

  it('the new images of one batch request share an encoder pass', async () => {
    const images = await Promise.all(Array.from({ length: 3 }, (_, i) => pngImage(44, 36, 350 + i)));
    const m0 = await metrics(srv.base);
    const r = await postJson(srv.base, '/api/v1/image/batch', { images: images.map((img) => ({ image: b64(img), prompts: [text('car')] })) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.results.length, 3);
    const m1 = await metrics(srv.base);
    const delta = (name: string) => (metric(m1, name) ?? 0) - (metric(m0, name) ?? 0);
    assert.equal(delta('sam3_encode_batch_size_sum'), 3);
    assert.equal(delta('sam3_encode_batch_size_count'), 1, 'three images in one pass (MAX_BATCH_SIZE 4)');
  });

  it('a lone request on an idle engine does not wait the batching window', async () => {
    const m0 = await metrics(srv.base);
    const r = await postJson(srv.base, '/api/v1/image/segment', { image: b64(await pngImage(40, 40, 399)), prompts: [text('car')] });
    assert.equal(r.status, 200, r.text);
    const m1 = await metrics(srv.base);
    const stage = (name: string, m: typeof m0) => metric(m, name, { stage: 'queue_wait' }) ?? 0;
    assert.equal(stage('sam3_inference_stage_seconds_count', m1) - stage('sam3_inference_stage_seconds_count', m0), 1);
    const waited = stage('sam3_inference_stage_seconds_sum', m1) - stage('sam3_inference_stage_seconds_sum', m0);
    assert.ok(waited < 0.05, `waited ${waited} s of the 0.1 s window`);
  });
});

describe('encoder batch by device when MAX_BATCH_SIZE is not set', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ BATCH_WAIT_MS: '100' });
  });
  after(async () => srv?.close());

  it('a CPU engine encodes one image a pass (a batched pass is slower there); CUDA batches 8', async () => {
    assert.equal(deviceBatchDefault('cpu'), 1);
    assert.equal(deviceBatchDefault('cuda'), 8);
    assert.equal(deviceBatchDefault('cuda:1'), 8);
    const info = await get(srv.base, '/models/info');
    assert.equal(info.body.batching.max_batch_size, null, 'no server-wide value: each device has its own');
    assert.equal(info.body.image_model.devices[0].max_batch_size, 1);
    const images = await Promise.all(Array.from({ length: 4 }, (_, i) => pngImage(36, 40, 800 + i)));
    const m0 = await metrics(srv.base);
    const replies = await Promise.all(images.map((img) => postJson(srv.base, '/api/v1/image/segment', { image: b64(img), prompts: [text('car')] })));
    for (const r of replies) assert.equal(r.status, 200, r.text);
    const m1 = await metrics(srv.base);
    const delta = (name: string) => (metric(m1, name) ?? 0) - (metric(m0, name) ?? 0);
    assert.equal(delta('sam3_encode_batch_size_sum'), 4);
    assert.equal(delta('sam3_encode_batch_size_count'), 4, 'four passes of one image');
  });
});

describe('bounded queue', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ MAX_QUEUE_SIZE: '2', BATCH_WAIT_MS: '400', RETRY_AFTER_SECONDS: '3' });
  });
  after(async () => srv?.close());

  it('beyond MAX_QUEUE_SIZE requests get 503 with Retry-After, and the server recovers', async () => {
    const images = await Promise.all(Array.from({ length: 6 }, (_, i) => pngImage(32, 32, 500 + i)));
    const replies = await Promise.all(images.map((img) => postJson(srv.base, '/api/v1/image/segment', { image: b64(img), prompts: [text('a')] })));
    const ok = replies.filter((r) => r.status === 200);
    const shed = replies.filter((r) => r.status === 503);
    assert.equal(ok.length, 2, replies.map((r) => r.status).join(','));
    assert.equal(shed.length, 4);
    for (const r of shed) {
      assert.equal(r.body.error.code, 'queue_full');
      assert.equal(r.headers.get('retry-after'), '3');
      assert.match(r.body.error.message, /retry after 3 s/);
    }
    assert.equal(metric(await metrics(srv.base), 'sam3_queue_rejections_total'), 4);
    const later = await postJson(srv.base, '/api/v1/image/segment', { image: b64(images[5]!), prompts: [text('a')] });
    assert.equal(later.status, 200);
    assert.equal(metric(await metrics(srv.base), 'sam3_jobs_admitted'), 0, 'every slot is released');
  });

  it('a batch larger than the free slots: the images beyond them get a 503 queue_full entry to retry, the others their masks', async () => {
    const images = await Promise.all(Array.from({ length: 3 }, (_, i) => pngImage(32, 32, 600 + i)));
    const r = await postJson(srv.base, '/api/v1/image/batch', { images: images.map((img) => ({ image: b64(img), prompts: [text('a')] })) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.num_failed, 1);
    // Images are admitted in order: the first two take the two slots.
    for (const i of [0, 1]) assert.deepEqual(r.body.results[i].image_size, { width: 32, height: 32 });
    const shed = r.body.results[2];
    assert.equal(shed.http_status, 503);
    assert.equal(shed.error.code, 'queue_full');
    assert.equal(shed.error.details.retry_after_seconds, 3);
    assert.equal(shed.error.details.index, 2);
    assert.equal(metric(await metrics(srv.base), 'sam3_jobs_admitted'), 0, 'every slot is released');
    // Retrying the shed image alone succeeds.
    const retry = await postJson(srv.base, '/api/v1/image/batch', { images: [{ image: b64(images[2]!), prompts: [text('a')] }] });
    assert.equal(retry.body.num_failed, 0, retry.text);
  });
});

describe('two engines', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ DEVICES: 'cpu,cpu', ENGINE_THREADS: '1', BATCH_WAIT_MS: '50', MAX_BATCH_SIZE: '2' });
  });
  after(async () => srv?.close());

  it('spreads new images over both engines; image ids go to the engine that holds them', async () => {
    const health = await get(srv.base, '/health');
    assert.deepEqual(health.body.devices, ['cpu', 'cpu']);
    const info = await get(srv.base, '/models/info');
    assert.deepEqual(
      info.body.image_model.devices.map((d: { label: string }) => d.label),
      ['cpu#0', 'cpu#1'],
    );
    const images = await Promise.all(Array.from({ length: 6 }, (_, i) => pngImage(36, 36, 700 + i)));
    const replies = await Promise.all(images.map((img) => postJson(srv.base, '/api/v1/image/embed', { image: b64(img) })));
    for (const r of replies) assert.equal(r.status, 200, r.text);
    const m = await metrics(srv.base);
    const first = metric(m, 'sam3_encode_batch_size_sum', { device: 'cpu#0' }) ?? 0;
    const second = metric(m, 'sam3_encode_batch_size_sum', { device: 'cpu#1' }) ?? 0;
    assert.equal(first + second, 6);
    assert.ok(first > 0 && second > 0, `cpu#0 encoded ${first}, cpu#1 ${second}`);
    const byId = await Promise.all(replies.map((r) => postJson(srv.base, '/api/v1/image/cached-features', { image_id: r.body.image_id, text_prompts: ['a', 'b'] })));
    for (const r of byId) {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.cache_hit, true);
    }
  });
});
