/**
 * The image-feature cache over HTTP: hits and misses, expiry after the TTL (with a test clock),
 * LRU eviction by entries and by bytes, concurrent requests for one image encoding it once, and the
 * cache switched off.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { pngImage } from './helpers.js';
import { type TestServer, b64, get, metric, metrics, postJson, startServer } from './server-helpers.js';

const text = (t: string) => ({ type: 'text', text: t });

async function counters(base: string) {
  const m = await metrics(base);
  return {
    hits: metric(m, 'sam3_feature_cache_hits_total') ?? 0,
    misses: metric(m, 'sam3_feature_cache_misses_total') ?? 0,
    evictions: metric(m, 'sam3_feature_cache_evictions_total') ?? 0,
    expirations: metric(m, 'sam3_feature_cache_expirations_total') ?? 0,
    entries: metric(m, 'sam3_feature_cache_entries') ?? 0,
    bytes: metric(m, 'sam3_feature_cache_bytes') ?? 0,
    encoded: metric(m, 'sam3_encode_batch_size_sum') ?? 0,
  };
}

describe('feature cache', () => {
  let srv: TestServer;
  let clock = 1_000_000;
  const images: string[] = [];
  const embed = (image: string) => postJson(srv.base, '/api/v1/image/embed', { image });
  const byId = (image_id: string) => postJson(srv.base, '/api/v1/image/segment', { image_id, prompts: [text('person')] });

  before(async () => {
    srv = await startServer({ FEATURE_CACHE_MAX_ENTRIES: '2', FEATURE_CACHE_TTL_SECONDS: '60' }, { now: () => clock });
    for (let i = 0; i < 4; i++) images.push(b64(await pngImage(48, 40, 100 + i)));
  });
  after(async () => srv?.close());

  it('a miss encodes, a hit does not', async () => {
    const c0 = await counters(srv.base);
    const first = await postJson(srv.base, '/api/v1/image/segment', { image: images[0], prompts: [text('a')] });
    assert.equal(first.body.cache_hit, false);
    const second = await postJson(srv.base, '/api/v1/image/segment', { image: images[0], prompts: [text('b')] });
    assert.equal(second.body.cache_hit, true);
    assert.equal(second.body.image_id, first.body.image_id);
    const c1 = await counters(srv.base);
    assert.equal(c1.encoded - c0.encoded, 1, 'one encoder run for two requests');
    assert.ok(c1.hits - c0.hits >= 1);
    assert.ok(c1.misses - c0.misses >= 1);
    assert.equal(c1.entries, 1);
    assert.ok(c1.bytes > 0);
  });

  it('entries expire after FEATURE_CACHE_TTL_SECONDS', async () => {
    const e = await embed(images[1]!);
    assert.equal((await byId(e.body.image_id)).status, 200);
    const c0 = await counters(srv.base);
    clock += 61_000;
    const gone = await byId(e.body.image_id);
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'unknown_image_id');
    assert.match(gone.body.error.message, /expired after FEATURE_CACHE_TTL_SECONDS = 60 s unused/);
    const again = await postJson(srv.base, '/api/v1/image/segment', { image: images[1], prompts: [text('a')] });
    assert.equal(again.body.cache_hit, false, 'an expired entry is encoded again');
    const c1 = await counters(srv.base);
    assert.ok(c1.expirations - c0.expirations >= 1);
  });

  it('the TTL runs from the last use: a hit or a re-embed renews it, expires_in_seconds included', async () => {
    clock += 120_000; // everything so far has expired
    const used = await embed(images[2]!);
    const idle = await embed(images[3]!);
    assert.equal(used.status, 200, used.text);
    assert.equal(used.body.expires_in_seconds, 60);
    clock += 54_000; // 0.9 TTL
    const hit = await byId(used.body.image_id);
    assert.equal(hit.status, 200, hit.text);
    assert.equal(hit.body.cache_hit, true);
    clock += 6_000; // TTL: the unused entry expires
    assert.equal((await byId(idle.body.image_id)).status, 404, 'unused since embedding: expired at the TTL');
    clock += 30_000; // 1.5 TTL, 0.6 TTL after the hit
    assert.equal((await byId(used.body.image_id)).status, 200, 'renewed by the hit at 0.9 TTL');
    clock += 48_000; // 0.8 TTL after that hit
    const reembed = await embed(images[2]!);
    assert.equal(reembed.body.cache_hit, true, 'the same image again returns the entry...');
    assert.equal(reembed.body.image_id, used.body.image_id);
    clock += reembed.body.expires_in_seconds * 1000 - 1; // ...and renews it for expires_in_seconds
    assert.equal((await byId(used.body.image_id)).status, 200);
    clock += reembed.body.expires_in_seconds * 1000; // unused for expires_in_seconds: gone
    const gone = await byId(used.body.image_id);
    assert.equal(gone.status, 404);
    assert.equal(gone.body.error.code, 'unknown_image_id');
  });

  it('beyond FEATURE_CACHE_MAX_ENTRIES the least recently used entry is evicted', async () => {
    clock += 120_000; // everything so far has expired
    const a = await embed(images[2]!);
    const b = await embed(images[3]!);
    assert.equal((await byId(a.body.image_id)).status, 200); // a is now more recent than b
    const c0 = await counters(srv.base);
    const c = await embed(images[0]!);
    assert.equal(c.body.cache_hit, false);
    assert.equal((await byId(b.body.image_id)).status, 404, 'b was least recently used');
    assert.equal((await byId(a.body.image_id)).status, 200);
    assert.equal((await byId(c.body.image_id)).status, 200);
    const c1 = await counters(srv.base);
    assert.equal(c1.evictions - c0.evictions, 1);
    assert.equal(c1.entries, 2);
    const info = await get(srv.base, '/models/info');
    assert.equal(info.body.feature_cache.entries, 2);
    assert.ok(info.body.feature_cache.evictions >= 1);
  });

  it('concurrent requests for the same new image encode it once', async () => {
    const image = b64(await pngImage(56, 56, 777));
    const c0 = await counters(srv.base);
    const replies = await Promise.all(Array.from({ length: 4 }, () => postJson(srv.base, '/api/v1/image/segment', { image, prompts: [text('person')], confidence_threshold: 0.1 })));
    for (const r of replies) {
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body.masks, replies[0]!.body.masks);
    }
    assert.equal(replies.filter((r) => !r.body.cache_hit).length, 1);
    const c1 = await counters(srv.base);
    assert.equal(c1.encoded - c0.encoded, 1);
  });
});

describe('feature cache bounded by bytes', () => {
  let srv: TestServer;
  let perEntry = 0;
  before(async () => {
    // Measure one entry of the test model's features on an unbounded cache, then bound the cache
    // at 1.5 entries: it holds one, not two, whatever the model's widths are.
    const probe = await startServer({});
    try {
      const r = await postJson(probe.base, '/api/v1/image/embed', { image: b64(await pngImage(48, 48, 9)) });
      assert.equal(r.status, 200, r.text);
      perEntry = (await get(probe.base, '/models/info')).body.feature_cache.bytes;
    } finally {
      await probe.close();
    }
    assert.ok(perEntry > 0, 'one cached entry has a size');
    srv = await startServer({ FEATURE_CACHE_MAX_MB: String((1.5 * perEntry) / (1024 * 1024)) });
  });
  after(async () => srv?.close());

  it('the oldest entry is evicted when the next one would exceed FEATURE_CACHE_MAX_MB', async () => {
    const a = await postJson(srv.base, '/api/v1/image/embed', { image: b64(await pngImage(48, 48, 1)) });
    assert.equal(a.status, 200, a.text);
    const info = await get(srv.base, '/models/info');
    assert.equal(info.body.feature_cache.bytes, perEntry, 'an entry of another image has the same size');
    assert.equal(info.body.feature_cache.entries, 1);
    const b = await postJson(srv.base, '/api/v1/image/embed', { image: b64(await pngImage(48, 48, 2)) });
    assert.equal((await postJson(srv.base, '/api/v1/image/segment', { image_id: a.body.image_id, prompts: [text('x')] })).status, 404);
    assert.equal((await postJson(srv.base, '/api/v1/image/segment', { image_id: b.body.image_id, prompts: [text('x')] })).status, 200);
    const m = await metrics(srv.base);
    assert.equal(metric(m, 'sam3_feature_cache_evictions_total'), 1);
    assert.equal(metric(m, 'sam3_feature_cache_bytes'), perEntry);
  });
});

describe('feature cache disabled', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ ENABLE_FEATURE_CACHE: 'false' });
  });
  after(async () => srv?.close());

  it('every request encodes; image ids are refused with 409', async () => {
    const image = b64(await pngImage(48, 40, 5));
    const c0 = metric(await metrics(srv.base), 'sam3_encode_batch_size_sum') ?? 0;
    for (let i = 0; i < 2; i++) {
      const r = await postJson(srv.base, '/api/v1/image/segment', { image, prompts: [text('a')] });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.cache_hit, false);
      assert.equal(r.body.image_id, null);
    }
    assert.equal((metric(await metrics(srv.base), 'sam3_encode_batch_size_sum') ?? 0) - c0, 2);
    const e = await postJson(srv.base, '/api/v1/image/embed', { image });
    assert.equal(e.status, 409);
    assert.equal(e.body.error.code, 'feature_cache_disabled');
    const s = await postJson(srv.base, '/api/v1/image/segment', { image_id: 'a'.repeat(64), prompts: [text('a')] });
    assert.equal(s.status, 409);
    assert.match(s.body.error.message, /ENABLE_FEATURE_CACHE=false; send the image itself/);
    assert.equal((await get(srv.base, '/models/info')).body.feature_cache.enabled, false);
  });
});
