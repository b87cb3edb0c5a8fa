/**
 * Bad input of every kind the issue lists gets a 4xx JSON error {error: {code, message, details}}
 * whose message names the field and says what to change; a native failure is a 5xx carrying a
 * request id that the log also has; and the server keeps answering afterwards.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import sharp from 'sharp';

import { pngImage } from './helpers.js';
import { type Reply, type TestServer, b64, blob, get, postJson, postRaw, startServer } from './server-helpers.js';

function expectError(r: Reply, status: number, code: string, message?: RegExp) {
  assert.equal(r.status, status, `status of ${r.text}`);
  assert.match(r.headers.get('content-type') ?? '', /application\/json/);
  assert.equal(r.body.error.code, code, r.text);
  assert.equal(typeof r.body.error.message, 'string');
  assert.equal(typeof r.body.error.details, 'object');
  assert.equal(r.body.error.request_id, r.headers.get('x-request-id'));
  if (message) assert.match(r.body.error.message, message);
}

const text = (t: string) => ({ type: 'text', text: t });

/** A /batch answer's item `index` failed with this status, code and message, in the error body's shape. */
function expectItemError(r: Reply, index: number, status: number, code: string, message?: RegExp) {
  assert.equal(r.status, 200, `the batch itself succeeds: ${r.text}`);
  const item = r.body.results[index];
  assert.equal(item.http_status, status, JSON.stringify(item));
  assert.deepEqual(Object.keys(item.error).sort(), ['code', 'details', 'message', 'request_id']);
  assert.equal(item.error.code, code, JSON.stringify(item));
  assert.equal(item.error.request_id, r.headers.get('x-request-id'));
  assert.equal(item.error.details.index, index);
  if (message) assert.match(item.error.message, message);
}

describe('bad input', () => {
  let srv: TestServer;
  let image: string;
  const segment = (body: unknown) => postJson(srv.base, '/api/v1/image/segment', body);

  before(async () => {
    srv = await startServer({ MAX_BODY_MB: '0.5', MAX_IMAGE_PIXELS: '250000', MAX_PROMPTS_PER_REQUEST: '4' });
    image = b64(await pngImage(64, 48, 3));
  });
  after(async () => srv?.close());

  it('invalid base64 and data URLs', async () => {
    expectError(await segment({ image: 'this is not base64!', prompts: [text('a')] }), 400, 'invalid_base64', /^image is not valid base64 \(first bad character at offset 18: "!"\); send the image file's bytes base64-encoded/);
    expectError(await segment({ image: 'abcde', prompts: [text('a')] }), 400, 'invalid_base64', /image is not valid base64/);
    expectError(await segment({ image: 42, prompts: [text('a')] }), 400, 'validation_error', /^image: image must be a string: the image file as base64 or a data URL/);
    expectError(await segment({ image: 'data:image/png,rawbytes', prompts: [text('a')] }), 400, 'invalid_base64', /data URL without ';base64,'/);
    expectError(await segment({ image: `data:text/plain;base64,${b64(Buffer.from('hello'))}`, prompts: [text('a')] }), 400, 'invalid_image', /data URL of type 'text\/plain'/);
  });

  it('bytes that are not an image, a truncated image, an empty one, a tiny one', async () => {
    expectError(await segment({ image: b64(Buffer.from('just some text, not a picture')), prompts: [text('a')] }), 400, 'invalid_image', /not a readable image.*send a PNG, JPEG/);
    const png = await pngImage(64, 48, 3);
    expectError(await segment({ image: b64(png.subarray(0, 100)), prompts: [text('a')] }), 400, 'invalid_image');
    expectError(await segment({ image: '', prompts: [text('a')] }), 400, 'validation_error', /^image: image is empty/);
    const onePixel = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#0f0' } }).png().toBuffer();
    expectError(await segment({ image: b64(onePixel), prompts: [text('a')] }), 400, 'invalid_image', /1x1; both sides must be at least 8 pixels/);
  });

  it('an image over MAX_IMAGE_PIXELS (a decompression bomb: small file, many pixels)', async () => {
    const bomb = await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#fff' } }).png().toBuffer();
    assert.ok(bomb.byteLength < 100_000);
    const r = await segment({ image: b64(bomb), prompts: [text('a')] });
    expectError(r, 413, 'image_too_large', /3000x3000 = 9000000 pixels, above the limit of 250000/);
  });

  it('a body over MAX_BODY_MB, as JSON and as multipart', async () => {
    const big = 'A'.repeat(600 * 1024);
    expectError(await segment({ image: big, prompts: [text('a')] }), 413, 'body_too_large', /MAX_BODY_MB = 0.5 MB/);
    const form = new FormData();
    form.append('image', blob(Buffer.alloc(600 * 1024, 1)), 'big.png');
    form.append('prompts', JSON.stringify([text('a')]));
    expectError(await postRaw(srv.base, '/api/v1/image/segment', form), 413, 'body_too_large');
  });

  it('malformed prompts', async () => {
    expectError(await segment({ image }), 400, 'validation_error', /^prompts: this field is required \(prompts must be an array/);
    expectError(await segment({ image, prompts: 'person' }), 400, 'validation_error', /^prompts: prompts must be an array/);
    assert.equal((await segment({ image, prompts: 'person' })).body.error.details.issues.length, 1, 'one issue per field');
    expectError(await segment({ image, prompts: [] }), 400, 'validation_error', /^prompts: prompts is empty/);
    expectError(await segment({ image, prompts: [{ text: 'a' }] }), 400, 'validation_error', /^prompts\[0\]\.type: each prompt needs type 'text'/);
    expectError(await segment({ image, prompts: [{ type: 'point', point: [1, 2] }] }), 400, 'validation_error', /^prompts\[0\]\.type: each prompt needs type/);
    expectError(await segment({ image, prompts: [text('   ')] }), 400, 'validation_error', /^prompts\[0\]\.text: text is empty/);
    expectError(await segment({ image, prompts: [{ type: 'text', text: 7 }] }), 400, 'validation_error', /^prompts\[0\]\.text: /);
    expectError(await segment({ image, prompts: [text('x'.repeat(1001))] }), 400, 'validation_error', /longer than 1000 characters/);
    expectError(await segment({ image, prompts: [{ type: 'box', box: [0.1, 0.2, 0.3] }] }), 400, 'validation_error', /^prompts\[0\]\.box: box must be \[x, y, width, height\]/);
    expectError(await segment({ image, prompts: [{ type: 'box', box: [0.1, 0.2, 0.3, 0.3], label: 'yes' }] }), 400, 'validation_error', /^prompts\[0\]\.label: label must be true/);
    expectError(await segment({ image, prompts: [text('a'), text('b'), text('c'), text('d'), text('e')] }), 400, 'validation_error', /more than 4 prompts \(MAX_PROMPTS_PER_REQUEST\)/);
  });

  it('boxes outside [0, 1] or with non-positive size', async () => {
    const box = (b: number[]) => segment({ image, prompts: [{ type: 'box', box: b }] });
    expectError(await box([0.5, 0.5, 0.6, 0.2]), 400, 'validation_error', /^prompts\[0\]\.box: box \[0.5, 0.5, 0.6, 0.2\] is outside the image/);
    expectError(await box([-0.1, 0.5, 0.2, 0.2]), 400, 'validation_error', /outside the image/);
    expectError(await box([0.1, 1.2, 0.2, 0.2]), 400, 'validation_error', /outside the image/);
    expectError(await box([0.1, 0.1, 0, 0.2]), 400, 'validation_error', /width 0 and height 0.2; both must be > 0/);
    expectError(await box([0.1, 0.1, 0.2, -0.3]), 400, 'validation_error', /both must be > 0/);
  });

  it('a threshold outside [0, 1] or not a number', async () => {
    expectError(await segment({ image, prompts: [text('a')], confidence_threshold: 1.5 }), 400, 'validation_error', /^confidence_threshold: confidence_threshold must be within \[0, 1\]/);
    expectError(await segment({ image, prompts: [text('a')], confidence_threshold: -0.1 }), 400, 'validation_error', /within \[0, 1\]/);
    expectError(await segment({ image, prompts: [text('a')], confidence_threshold: '0.5' }), 400, 'validation_error', /must be a number/);
    expectError(await postJson(srv.base, '/api/v1/image/cached-features', { image, text_prompts: ['a'], confidence_threshold: 2 }), 400, 'validation_error', /within \[0, 1\]/);
  });

  it('an unknown image_id is 404; a malformed one 400; image and image_id are exclusive', async () => {
    const unknown = 'ab'.repeat(32);
    expectError(await segment({ image_id: unknown, prompts: [text('a')] }), 404, 'unknown_image_id', /is not in the feature cache .* send the image again, or embed it/);
    expectError(await postJson(srv.base, '/api/v1/image/cached-features', { image_id: unknown, text_prompts: ['a'] }), 404, 'unknown_image_id');
    expectError(await segment({ image_id: 'not-an-id', prompts: [text('a')] }), 400, 'validation_error', /image_id must be the id returned by \/api\/v1\/image\/embed .*: 64 hex characters/);
    expectError(await segment({ image, image_id: unknown, prompts: [text('a')] }), 400, 'validation_error', /both set; send exactly one/);
    expectError(await segment({ prompts: [text('a')] }), 400, 'validation_error', /^image is required/);
  });

  it('unknown fields, at the top and inside a prompt', async () => {
    const r = await segment({ image, prompts: [text('a')], threshold: 0.5 });
    expectError(r, 400, 'validation_error', /^\(body\): unknown field 'threshold'; remove it/);
    expectError(await segment({ image, prompts: [{ type: 'text', text: 'a', label: true }] }), 400, 'validation_error', /^prompts\[0\]: unknown field 'label'/);
    expectError(await postJson(srv.base, '/api/v1/image/embed', { image, prompts: [] }), 400, 'validation_error', /unknown field 'prompts'/);
    const item = await postJson(srv.base, '/api/v1/image/batch', { images: [{ image, prompts: [text('a')], extra: 1 }] });
    expectItemError(item, 0, 400, 'validation_error', /^images\[0\]: unknown field 'extra'/);
    expectError(await postJson(srv.base, '/api/v1/image/batch', { images: [{ image, prompts: [text('a')] }], extra: 1 }), 400, 'validation_error', /^\(body\): unknown field 'extra'/);
  });

  it('a wrong content type is 415; invalid JSON is 400', async () => {
    expectError(await postRaw(srv.base, '/api/v1/image/segment', JSON.stringify({ image, prompts: [text('a')] }), { 'content-type': 'text/plain' }), 415, 'unsupported_media_type', /Content-Type text\/plain is not accepted here; send 'application\/json' or 'multipart\/form-data'/);
    expectError(await postRaw(srv.base, '/api/v1/image/segment', new Uint8Array([1, 2, 3]), { 'content-type': 'application/octet-stream' }), 415, 'unsupported_media_type');
    const form = new FormData();
    form.append('images', '[]');
    expectError(await postRaw(srv.base, '/api/v1/image/batch', form), 415, 'unsupported_media_type', /send 'application\/json'/);
    expectError(await postJson(srv.base, '/api/v1/image/segment', '{"image": "abc", '), 400, 'invalid_json', /not valid JSON/);
    expectError(await postJson(srv.base, '/api/v1/image/segment', '[1, 2]'), 400, 'validation_error', /must be a JSON object/);
  });

  it('multipart mistakes: a file part with another name, prompts that are not JSON', async () => {
    const png = await pngImage(64, 48, 3);
    const wrongName = new FormData();
    wrongName.append('file', blob(png), 'a.png');
    wrongName.append('prompts', JSON.stringify([text('a')]));
    expectError(await postRaw(srv.base, '/api/v1/image/segment', wrongName), 400, 'validation_error', /field 'file'.*part named 'image'/);
    const badJson = new FormData();
    badJson.append('image', blob(png), 'a.png');
    badJson.append('prompts', 'person');
    expectError(await postRaw(srv.base, '/api/v1/image/segment', badJson), 400, 'validation_error', /multipart field 'prompts' must be JSON text/);
  });

  it('a bad batch item fails alone, named by its index, with the error body /segment gives; the others get their masks', async () => {
    const good = { image, prompts: [text('a')], confidence_threshold: 0 };
    const bomb = b64(await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#fff' } }).png().toBuffer());
    const images = [
      good,
      { image, prompts: [{ type: 'box', box: [0, 0, 2, 1] }] },
      { image: '%%%', prompts: [text('a')] },
      { image: b64(Buffer.from('no image here')), prompts: [text('a')] },
      { image_id: 'ab'.repeat(32), prompts: [text('a')] },
      { image: bomb, prompts: [text('a')] },
      7,
      good,
    ];
    const r = await postJson(srv.base, '/api/v1/image/batch', { images });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.results.length, images.length);
    assert.equal(r.body.num_failed, 6);
    expectItemError(r, 1, 400, 'validation_error', /^images\[1\]\.prompts\[0\]\.box: /);
    expectItemError(r, 2, 400, 'invalid_base64', /^images\[2\]\.image is not valid base64/);
    expectItemError(r, 3, 400, 'invalid_image', /^images\[3\]: the bytes are not a readable image/);
    expectItemError(r, 4, 404, 'unknown_image_id', /^images\[4\]: image_id (ab)+ is not in the feature cache/);
    expectItemError(r, 5, 413, 'image_too_large', /^images\[5\]: the image is 3000x3000/);
    expectItemError(r, 6, 400, 'validation_error', /^images\[6\]: /);
    // The same mistakes sent alone to /segment give the same code and details (without the index).
    for (const i of [1, 2, 3, 4, 5]) {
      const alone = await segment(images[i]);
      assert.equal(alone.status, r.body.results[i].http_status, `images[${i}] alone: ${alone.text}`);
      assert.equal(alone.body.error.code, r.body.results[i].error.code);
      const { index, ...details } = r.body.results[i].error.details;
      assert.equal(index, i);
      assert.deepEqual(Object.keys(details).sort(), Object.keys(alone.body.error.details).sort(), `images[${i}] details`);
    }
    for (const i of [0, 7]) {
      const ok = r.body.results[i];
      assert.equal(ok.error, undefined, JSON.stringify(ok));
      assert.deepEqual(ok.image_size, { width: 64, height: 48 });
      assert.equal(ok.masks.length, ok.num_masks);
      assert.ok(ok.num_masks > 0, 'threshold 0 keeps every query');
    }
    assert.deepEqual(r.body.results[7].masks, r.body.results[0].masks, 'the same image and prompts: the same masks');
    // Whole-request mistakes are still the request's.
    expectError(await postJson(srv.base, '/api/v1/image/batch', { images: [] }), 400, 'validation_error', /images is empty/);
    expectError(await postJson(srv.base, '/api/v1/image/batch', { images: good }), 400, 'validation_error', /^images: /);
    expectError(await postJson(srv.base, '/api/v1/image/batch', { images: [good], mask_format: 'svg' }), 400, 'validation_error', /^mask_format: /);
  });

  it('a client request id is echoed and used in the log', async () => {
    const r = await postJson(srv.base, '/api/v1/image/segment', { image: 'bad!', prompts: [text('a')] }, { 'x-request-id': 'client-abc-123' });
    expectError(r, 400, 'invalid_base64');
    assert.equal(r.body.error.request_id, 'client-abc-123');
    assert.ok(srv.logs.some((l) => l.req_id === 'client-abc-123' && l.msg === 'request refused'));
  });

  it('after all of this the server still segments', async () => {
    const r = await segment({ image, prompts: [text('person')], confidence_threshold: 0.1 });
    assert.equal(r.status, 200, r.text);
    assert.equal((await get(srv.base, '/health')).status, 200);
  });
});

describe('native failures', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer();
  });
  after(async () => srv?.close());

  it('a failing engine gives a 5xx with a request id in the body and the log; the process lives on', async () => {
    const image = b64(await pngImage(64, 48, 5));
    const ok = await postJson(srv.base, '/api/v1/image/embed', { image });
    assert.equal(ok.status, 200);
    // Close the engine under the model: every native call now fails inside the addon.
    srv.svc.pool()!.workers[0]!.engine.close();
    const r = await postJson(srv.base, '/api/v1/image/segment', { image: b64(await pngImage(64, 48, 6)), prompts: [text('a')] });
    assert.equal(r.status, 500, r.text);
    assert.equal(r.body.error.code, 'internal_error');
    assert.match(r.body.error.message, /request id/);
    const id = r.body.error.request_id;
    assert.match(id, /^[0-9a-f-]{36}$/);
    const logged = srv.logs.find((l) => l.req_id === id && l.level === 50 && l.msg === 'request failed');
    assert.ok(logged, 'the error is logged under the request id');
    assert.ok((logged.err as { message: string }).message.length > 0);
    const again = await postJson(srv.base, '/api/v1/image/segment', { image_id: ok.body.image_id, prompts: [text('a')] });
    assert.equal(again.status, 500);
    assert.equal((await get(srv.base, '/health')).status, 200, 'the HTTP layer keeps answering');
  });
});
