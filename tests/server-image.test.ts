/**
 * The image endpoints against the real addon and the tiny bundle: results equal the library's own
 * (so the HTTP layer maps prompts, thresholds and outputs faithfully), several prompts of a request
 * run in one head pass, and the spec's curl and Python examples work as written.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import type { Prompt, Sam3Model, Segmentation } from '../src/index.js';
import { jpegImage, pngImage, python, tempDir } from './helpers.js';
import { type TestServer, b64, blob, get, metric, metrics, postJson, postRaw, startServer } from './server-helpers.js';

const run = promisify(execFile);

function close(a: number[], b: number[], tol = 1e-4) {
  assert.equal(a.length, b.length);
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= tol, `index ${i}: ${v} vs ${b[i]}`));
}

/** The HTTP result for one query equals the library's Segmentation. */
function sameAs(http: { masks: unknown[]; boxes: number[][]; scores: number[] }, lib: Segmentation) {
  close(http.scores, lib.scores);
  close(http.boxes.flat(), lib.boxes.flat());
  assert.deepEqual(http.masks, lib.masks);
}

async function headPasses(base: string): Promise<number> {
  return metric(await metrics(base), 'sam3_inference_stage_seconds_count', { stage: 'head' }) ?? 0;
}

describe('image endpoints', () => {
  let srv: TestServer;
  let model: Sam3Model;
  let png: Buffer;
  let jpg: Buffer;

  before(async () => {
    srv = await startServer();
    // The server's own model, called directly through the library API: the reference answer.
    model = srv.svc.pool()!.workers[0]!.model;
    png = await pngImage(64, 48, 1);
    jpg = await jpegImage(80, 56, 2);
  });
  after(async () => srv?.close());

  async function library(image: Buffer, prompts: Prompt[], threshold: number): Promise<Segmentation[]> {
    const f = await model.encodeImage(image);
    try {
      return await model.segmentBatch(f, prompts, { threshold });
    } finally {
      f.dispose();
    }
  }

  it('segment: one text prompt gives the spec fields, COCO RLE masks and the library result', async () => {
    const r = await postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts: [{ type: 'text', text: 'person' }], confidence_threshold: 0 });
    assert.equal(r.status, 200, r.text);
    const body = r.body;
    for (const key of ['masks', 'boxes', 'scores', 'num_masks', 'image_size', 'inference_time_ms', 'prompt_index', 'image_id', 'cache_hit']) assert.ok(key in body, `missing ${key}`);
    assert.deepEqual(body.image_size, { width: 64, height: 48 });
    assert.ok(body.num_masks > 0, 'threshold 0 keeps every query');
    assert.equal(body.masks.length, body.num_masks);
    assert.equal(body.boxes.length, body.num_masks);
    for (const m of body.masks) {
      assert.deepEqual(m.size, [48, 64]);
      assert.equal(typeof m.counts, 'string');
    }
    for (const b of body.boxes) for (const v of b) assert.ok(v >= -1e-6 && v <= 1 + 1e-6);
    assert.ok(typeof body.inference_time_ms === 'number' && body.inference_time_ms > 0);
    assert.equal(body.image_id, createHash('sha256').update(png).digest('hex'));
    assert.deepEqual(body.prompt_index, new Array(body.num_masks).fill(0));
    const [lib] = await library(png, [{ text: 'person' }], 0);
    sameAs(body, lib!);
  });

  it('segment: the threshold filters detections', async () => {
    const all = await postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts: [{ type: 'text', text: 'person' }], confidence_threshold: 0 });
    const mid = [...all.body.scores].sort((a: number, b: number) => a - b)[Math.floor(all.body.num_masks / 2)];
    const some = await postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts: [{ type: 'text', text: 'person' }], confidence_threshold: mid });
    assert.equal(some.status, 200);
    assert.ok(some.body.num_masks < all.body.num_masks);
    assert.ok(some.body.scores.every((s: number) => s > mid));
    const none = await postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts: [{ type: 'text', text: 'person' }], confidence_threshold: 1 });
    assert.equal(none.status, 200);
    assert.equal(none.body.num_masks, 0);
    assert.deepEqual(none.body.masks, []);
  });

  it('segment: several text prompts on one encoding of the image, concatenated with prompt_index', async () => {
    const before = await headPasses(srv.base);
    const prompts = [
      { type: 'text', text: 'person' },
      { type: 'text', text: 'red car' },
      { type: 'text', text: 'dog' },
    ];
    const r = await postJson(srv.base, '/api/v1/image/segment', { image: b64(jpg), prompts, confidence_threshold: 0.2 });
    assert.equal(r.status, 200, r.text);
    assert.equal((await headPasses(srv.base)) - before, 1, 'one head pass for three prompts');
    const lib = await library(jpg, [{ text: 'person' }, { text: 'red car' }, { text: 'dog' }], 0.2);
    let at = 0;
    lib.forEach((seg, q) => {
      const n = seg.numMasks;
      sameAs({ masks: r.body.masks.slice(at, at + n), boxes: r.body.boxes.slice(at, at + n), scores: r.body.scores.slice(at, at + n) }, seg);
      assert.deepEqual(r.body.prompt_index.slice(at, at + n), new Array(n).fill(q));
      at += n;
    });
    assert.equal(r.body.num_masks, at);
  });

  it('segment: box prompts only make one visual-exemplar query', async () => {
    const boxes = [
      { type: 'box', box: [0.1, 0.1, 0.4, 0.5], label: true },
      { type: 'box', box: [0.6, 0.5, 0.3, 0.4], label: false },
    ];
    const r = await postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts: boxes, confidence_threshold: 0 });
    assert.equal(r.status, 200, r.text);
    const [lib] = await library(png, [{ boxes: [{ box: [0.1, 0.1, 0.4, 0.5], label: true }, { box: [0.6, 0.5, 0.3, 0.4], label: false }] }], 0);
    sameAs(r.body, lib!);
    assert.deepEqual(r.body.prompt_index, new Array(r.body.num_masks).fill(0));
  });

  it('segment: box exemplars apply to every text prompt; label defaults to true', async () => {
    const prompts = [
      { type: 'box', box: [0.2, 0.2, 0.3, 0.3] },
      { type: 'text', text: 'cat' },
      { type: 'text', text: 'bowl' },
    ];
    const r = await postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts, confidence_threshold: 0 });
    assert.equal(r.status, 200, r.text);
    const exemplar = [{ box: [0.2, 0.2, 0.3, 0.3] as [number, number, number, number], label: true }];
    const lib = await library(png, [{ text: 'cat', boxes: exemplar }, { text: 'bowl', boxes: exemplar }], 0);
    const n0 = lib[0]!.numMasks;
    sameAs({ masks: r.body.masks.slice(0, n0), boxes: r.body.boxes.slice(0, n0), scores: r.body.scores.slice(0, n0) }, lib[0]!);
    assert.deepEqual(r.body.prompt_index, [...new Array(n0).fill(1), ...new Array(lib[1]!.numMasks).fill(2)]);
  });

  it('segment: a data URL, a multipart upload and an image_id give the same result as base64', async () => {
    const prompts = [{ type: 'text', text: 'person' }];
    const plain = await postJson(srv.base, '/api/v1/image/segment', { image: b64(jpg), prompts, confidence_threshold: 0.1 });
    const dataUrl = await postJson(srv.base, '/api/v1/image/segment', { image: `data:image/jpeg;base64,${b64(jpg)}`, prompts, confidence_threshold: 0.1 });
    const form = new FormData();
    form.append('image', blob(jpg, 'image/jpeg'), 'photo.jpg');
    form.append('prompts', JSON.stringify(prompts));
    form.append('confidence_threshold', '0.1');
    const multipart = await postRaw(srv.base, '/api/v1/image/segment', form);
    const byId = await postJson(srv.base, '/api/v1/image/segment', { image_id: plain.body.image_id, prompts, confidence_threshold: 0.1 });
    for (const r of [plain, dataUrl, multipart, byId]) assert.equal(r.status, 200, r.text);
    for (const r of [dataUrl, multipart, byId]) {
      assert.deepEqual(r.body.masks, plain.body.masks);
      assert.deepEqual(r.body.scores, plain.body.scores);
      assert.equal(r.body.image_id, plain.body.image_id);
      assert.equal(r.body.cache_hit, true);
    }
  });

  it('cached-features: one result per prompt, in order, from one head pass', async () => {
    const image = await pngImage(72, 40, 9);
    const before = await headPasses(srv.base);
    const texts = ['person', 'car', 'bicycle', 'dog'];
    const first = await postJson(srv.base, '/api/v1/image/cached-features', { image: b64(image), text_prompts: texts, confidence_threshold: 0.1 });
    assert.equal(first.status, 200, first.text);
    assert.equal((await headPasses(srv.base)) - before, 1);
    assert.equal(first.body.cache_hit, false);
    assert.deepEqual(first.body.image_size, { width: 72, height: 40 });
    assert.equal(typeof first.body.inference_time_ms, 'number');
    assert.deepEqual(
      first.body.results.map((r: { prompt: string }) => r.prompt),
      texts,
    );
    const lib = await library(
      image,
      texts.map((text) => ({ text })),
      0.1,
    );
    first.body.results.forEach((r: any, i: number) => {
      assert.deepEqual(Object.keys(r).sort(), ['boxes', 'masks', 'num_masks', 'prompt', 'scores']);
      assert.equal(r.num_masks, lib[i]!.numMasks);
      sameAs(r, lib[i]!);
    });
    const second = await postJson(srv.base, '/api/v1/image/cached-features', { image: b64(image), text_prompts: ['person'] });
    assert.equal(second.body.cache_hit, true);
    const byId = await postJson(srv.base, '/api/v1/image/cached-features', { image_id: first.body.image_id, text_prompts: ['car', 'dog'], confidence_threshold: 0.1 });
    assert.equal(byId.status, 200, byId.text);
    assert.deepEqual(byId.body.results[0].masks, first.body.results[1].masks);
    assert.deepEqual(byId.body.results[1].scores, first.body.results[3].scores);
  });

  it('cached-features: multipart with repeated or JSON text_prompts', async () => {
    const form = new FormData();
    form.append('image', blob(png), 'a.png');
    form.append('text_prompts', 'person');
    form.append('text_prompts', '["car", "dog"]');
    const r = await postRaw(srv.base, '/api/v1/image/cached-features', form);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(
      r.body.results.map((x: { prompt: string }) => x.prompt),
      ['person', 'car', 'dog'],
    );
  });

  it('embed: returns the image id and size; a second embed is a cache hit', async () => {
    const image = await pngImage(40, 30, 11);
    const first = await postJson(srv.base, '/api/v1/image/embed', { image: b64(image) });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.body.image_id, createHash('sha256').update(image).digest('hex'));
    assert.deepEqual(first.body.image_size, { width: 40, height: 30 });
    assert.equal(first.body.cache_hit, false);
    assert.equal(first.body.expires_in_seconds, 600);
    const form = new FormData();
    form.append('image', blob(image), 'b.png');
    const second = await postRaw(srv.base, '/api/v1/image/embed', form);
    assert.equal(second.status, 200, second.text);
    assert.equal(second.body.image_id, first.body.image_id);
    assert.equal(second.body.cache_hit, true);
  });

  it('batch: several images with their prompts, results in order, only new images encoded', async () => {
    const a = await pngImage(50, 50, 21);
    const b = await jpegImage(60, 40, 22);
    const c = await pngImage(30, 64, 23);
    const embedded = await postJson(srv.base, '/api/v1/image/embed', { image: b64(c) });
    const beforeBatches = metric(await metrics(srv.base), 'sam3_encode_batch_size_count') ?? 0;
    const r = await postJson(srv.base, '/api/v1/image/batch', {
      images: [
        { image: b64(a), prompts: [{ type: 'text', text: 'person' }] },
        { image_id: embedded.body.image_id, prompts: [{ type: 'text', text: 'tree' }, { type: 'text', text: 'sky' }], confidence_threshold: 0.3 },
        { image: b64(b), prompts: [{ type: 'box', box: [0.1, 0.2, 0.5, 0.5] }] },
      ],
      confidence_threshold: 0.1,
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.results.length, 3);
    assert.equal(typeof r.body.inference_time_ms, 'number');
    assert.deepEqual(
      r.body.results.map((x: any) => x.image_size),
      [
        { width: 50, height: 50 },
        { width: 30, height: 64 },
        { width: 60, height: 40 },
      ],
    );
    assert.deepEqual(
      r.body.results.map((x: any) => x.cache_hit),
      [false, true, false],
    );
    const afterBatches = metric(await metrics(srv.base), 'sam3_encode_batch_size_count') ?? 0;
    // A CPU engine encodes one image a pass by default (MAX_BATCH_SIZE unset); the cached image none.
    // With MAX_BATCH_SIZE > 1 the new images share a pass (server-batching.test.ts).
    assert.equal(afterBatches - beforeBatches, 2, 'the two new images are encoded, the cached one is not');
    const [la] = await library(a, [{ text: 'person' }], 0.1);
    sameAs(r.body.results[0], la!);
    const lc = await library(c, [{ text: 'tree' }, { text: 'sky' }], 0.3);
    assert.equal(r.body.results[1].num_masks, lc[0]!.numMasks + lc[1]!.numMasks);
    const [lb] = await library(b, [{ boxes: [{ box: [0.1, 0.2, 0.5, 0.5] }] }], 0.1);
    sameAs(r.body.results[2], lb!);
  });

  it("the spec's curl example works as written", async () => {
    const dir = await tempDir('sam3-curl-');
    writeFileSync(path.join(dir, 'image.jpg'), jpg);
    const script = `
# Encode image to base64
IMAGE_B64=$(base64 -w 0 image.jpg)

# Send request
curl -X POST "http://localhost:8000/api/v1/image/segment" \\
  -H "Content-Type: application/json" \\
  -d "{
    \\"image\\": \\"$IMAGE_B64\\",
    \\"prompts\\": [{\\"type\\": \\"text\\", \\"text\\": \\"person\\"}],
    \\"confidence_threshold\\": 0.5
  }"
`.replace('http://localhost:8000', srv.base);
    const { stdout } = await run('bash', ['-c', script], { cwd: dir });
    const body = JSON.parse(stdout);
    assert.deepEqual(body.image_size, { width: 80, height: 56 });
    assert.equal(body.masks.length, body.num_masks);
    assert.equal(body.scores.length, body.num_masks);
  });

  it("the spec's Python client works as written, and pycocotools decodes the masks", async () => {
    const dir = await tempDir('sam3-py-');
    writeFileSync(path.join(dir, 'image.jpg'), jpg);
    // The build venv has no `requests`; this stand-in implements the one call the example makes.
    writeFileSync(
      path.join(dir, 'requests.py'),
      `import json, os, urllib.request
class Response:
    def __init__(self, status, body):
        self.status_code = status
        self._body = body
    def json(self):
        return json.loads(self._body)
def post(url, json=None):
    url = url.replace("http://localhost:8000", os.environ["SAM3_BASE"])
    req = urllib.request.Request(url, data=__import__("json").dumps(json).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return Response(r.status, r.read())
`,
    );
    // The image part of the spec's Python client, verbatim; then decode what it got.
    const client = `import base64
import requests
from PIL import Image
from io import BytesIO

# Load image
image = Image.open("image.jpg")
buffer = BytesIO()
image.save(buffer, format="PNG")
image_base64 = base64.b64encode(buffer.getvalue()).decode()

# Segment with text prompt
response = requests.post(
    "http://localhost:8000/api/v1/image/segment",
    json={
        "image": image_base64,
        "prompts": [
            {"type": "text", "text": "person"}
        ],
        "confidence_threshold": 0.5
    }
)

result = response.json()
print(f"Found {result['num_masks']} masks")
print(f"Scores: {result['scores']}")

# Not in the spec: a stricter look at the masks, with threshold 0 so there are some.
from pycocotools import mask as mask_utils
result = requests.post("http://localhost:8000/api/v1/image/segment", json={"image": image_base64, "prompts": [{"type": "text", "text": "person"}], "confidence_threshold": 0.0}).json()
decoded = [mask_utils.decode({"size": m["size"], "counts": m["counts"].encode()}) for m in result["masks"]]
print("DECODED", len(decoded), decoded[0].shape, int(sum(d.sum() for d in decoded)))
`;
    writeFileSync(path.join(dir, 'client.py'), client);
    const { stdout } = await run(python, ['client.py'], { cwd: dir, env: { ...process.env, SAM3_BASE: srv.base } });
    assert.match(stdout, /^Found \d+ masks$/m);
    assert.match(stdout, /^Scores: \[.*\]$/m);
    const m = /^DECODED (\d+) \((\d+), (\d+)\) (\d+)$/m.exec(stdout);
    assert.ok(m, stdout);
    assert.ok(Number(m[1]) > 0);
    assert.deepEqual([Number(m[2]), Number(m[3])], [56, 80]);
  });

  it('GET endpoints of the image API are 405, unknown paths 404, both as JSON errors', async () => {
    const r = await get(srv.base, '/api/v1/image/segment');
    assert.equal(r.status, 405);
    assert.equal(r.body.error.code, 'method_not_allowed');
    const n = await get(srv.base, '/api/v1/nothing');
    assert.equal(n.status, 404);
    assert.equal(n.body.error.code, 'not_found');
  });
});
