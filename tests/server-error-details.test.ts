/**
 * Error `details` keys are snake_case everywhere, like every other field of the API: this provokes
 * every kind of error a client can cause over HTTP, in batch items and on the WebSocket, and walks
 * each body's details (nested objects and arrays included).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import sharp from 'sharp';
import WebSocket from 'ws';

import { toolEnv, toolPath } from '../src/video/ffmpeg.js';
import { pngImage, tempDir } from './helpers.js';
import { type Reply, type TestServer, b64, blob, get, postJson, postRaw, startServer } from './server-helpers.js';

const SNAKE = /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/;

/** Every key path in `value` that is not snake_case (array indices are not keys). */
function camelKeys(value: unknown, at = 'details'): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => camelKeys(v, `${at}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => [...(SNAKE.test(k) ? [] : [`${at}.${k}`]), ...camelKeys(v, `${at}.${k}`)]);
}

async function makeVideo(file: string, frames: number): Promise<void> {
  const child = spawn(toolPath('ffmpeg'), ['-v', 'error', '-f', 'lavfi', '-i', `testsrc=size=64x48:rate=10:duration=${frames / 10}`, '-c:v', 'mpeg4', '-pix_fmt', 'yuv420p', '-y', file], { env: toolEnv('ffmpeg'), stdio: 'ignore' });
  assert.equal(await new Promise((resolve) => child.on('close', resolve)), 0);
}

const send = (base: string, method: string, p: string, body?: unknown) =>
  fetch(base + p, { method, ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}) }).then(async (res) => {
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined, text } as Reply;
  });

describe('error details are snake_case', () => {
  let srv: TestServer;
  let keyed: TestServer;
  const seen = new Map<string, Record<string, unknown>>();
  const record = (what: string, code: string, details: unknown) => {
    assert.equal(typeof details, 'object', `${what}: details is an object`);
    seen.set(`${code} (${what})`, details as Record<string, unknown>);
  };
  const expectError = (what: string, r: Reply, status: number, code: string) => {
    assert.equal(r.status, status, `${what}: ${r.text}`);
    assert.equal(r.body.error.code, code, `${what}: ${r.text}`);
    record(what, code, r.body.error.details);
  };

  before(async () => {
    const media = await tempDir('sam3-details-');
    await mkdir(path.join(media, 'clips'), { recursive: true });
    await makeVideo(path.join(media, 'clips', 'a.mp4'), 5);
    srv = await startServer({ MEDIA_ROOT: media, MAX_BODY_MB: '0.5', MAX_IMAGE_PIXELS: '250000', MAX_SESSIONS: '1', REPLICA_ID: 'sam3-0' });
    keyed = await startServer({ API_KEYS: 'k'.repeat(20) }, { wait: false });
  });
  after(async () => {
    await srv?.close();
    await keyed?.close();
  });

  it('on the image endpoints, batch items included', async () => {
    const image = b64(await pngImage(40, 40, 1));
    const seg = (body: unknown) => postJson(srv.base, '/api/v1/image/segment', body);
    expectError('bad base64', await seg({ image: 'abc!', prompts: [{ type: 'text', text: 'a' }] }), 400, 'invalid_base64');
    expectError('not an image', await seg({ image: b64(Buffer.from('text')), prompts: [{ type: 'text', text: 'a' }] }), 400, 'invalid_image');
    const tiny = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#000' } }).png().toBuffer();
    expectError('too small', await seg({ image: b64(tiny), prompts: [{ type: 'text', text: 'a' }] }), 400, 'invalid_image');
    assert.deepEqual(Object.keys(seen.get('invalid_image (too small)')!).sort(), ['height', 'min_side', 'width']);
    const bomb = await sharp({ create: { width: 1000, height: 1000, channels: 3, background: '#fff' } }).png().toBuffer();
    expectError('too many pixels', await seg({ image: b64(bomb), prompts: [{ type: 'text', text: 'a' }] }), 413, 'image_too_large');
    assert.equal(seen.get('image_too_large (too many pixels)')!.max_pixels, 250000);
    expectError('validation', await seg({ image, prompts: [{ type: 'box', box: [0, 0, 2, 2] }], extra: 1 }), 400, 'validation_error');
    expectError('unknown image_id', await seg({ image_id: 'ab'.repeat(32), prompts: [{ type: 'text', text: 'a' }] }), 404, 'unknown_image_id');
    expectError('wrong replica', await seg({ image_id: `sam3-9.${'ab'.repeat(32)}`, prompts: [{ type: 'text', text: 'a' }] }), 421, 'wrong_replica');
    expectError('body too large', await postRaw(srv.base, '/api/v1/image/segment', 'x'.repeat(600_000), { 'content-type': 'application/json' }), 413, 'body_too_large');
    expectError('content type', await postRaw(srv.base, '/api/v1/image/segment', 'x', { 'content-type': 'text/plain' }), 415, 'unsupported_media_type');
    expectError('bad JSON', await postRaw(srv.base, '/api/v1/image/segment', '{', { 'content-type': 'application/json' }), 400, 'invalid_json');
    expectError('no route', await get(srv.base, '/api/v1/nothing'), 404, 'not_found');
    expectError('method', await send(srv.base, 'PUT', '/api/v1/image/segment', {}), 405, 'method_not_allowed');
    const form = new FormData();
    form.append('image', blob(await pngImage(40, 40, 1)), 'a.png');
    form.append('prompts', 'not json');
    expectError('multipart', await postRaw(srv.base, '/api/v1/image/segment', form), 400, 'validation_error');
    expectError('unknown mask_input', await postJson(srv.base, '/api/v1/image/interactive', { image, points: [{ point: [0.5, 0.5], label: 1 }], mask_input: `mi_${'0'.repeat(32)}` }), 404, 'unknown_mask_input');
    const batch = await postJson(srv.base, '/api/v1/image/batch', {
      images: [{ image: 'abc!', prompts: [{ type: 'text', text: 'a' }] }, { image: b64(bomb), prompts: [{ type: 'text', text: 'a' }] }, { image, prompts: [] }],
    });
    assert.equal(batch.status, 200, batch.text);
    for (const [i, item] of (batch.body.results as any[]).entries()) record(`batch item ${i}`, item.error.code, item.error.details);
  });

  it('on the video endpoints and the WebSocket', async () => {
    const v = (p: string) => `/api/v1/video${p}`;
    expectError('outside MEDIA_ROOT', await postJson(srv.base, v('/session/start'), { video_path: '../x.mp4' }), 403, 'forbidden_path');
    expectError('missing video', await postJson(srv.base, v('/session/start'), { video_path: 'clips/none.mp4' }), 404, 'media_not_found');
    expectError('unknown upload', await postJson(srv.base, v('/session/start'), { video_id: 'sam3-0.0b5c8a7e-1f0d-4a43-9a59-6c1e2f3d4b5a' }), 404, 'media_not_found');
    const form = new FormData();
    form.append('file', blob(Buffer.from('not a video')), 'notes.txt');
    expectError('upload extension', await postRaw(srv.base, v('/upload'), form), 400, 'invalid_video');
    const fake = new FormData();
    fake.append('file', blob(Buffer.from('not a video at all')), 'fake.mp4');
    expectError('upload content', await postRaw(srv.base, v('/upload'), fake), 400, 'invalid_video');
    const s = await postJson(srv.base, v('/session/start'), { video_path: 'clips/a.mp4', session_id: 's1' });
    assert.equal(s.status, 200, s.text);
    const id = s.body.session_id as string;
    expectError('session taken', await postJson(srv.base, v('/session/start'), { video_path: 'clips/a.mp4', session_id: 's1' }), 409, 'session_exists');
    expectError('too many sessions', await postJson(srv.base, v('/session/start'), { video_path: 'clips/a.mp4' }), 429, 'too_many_sessions');
    expectError('frame range', await postJson(srv.base, v(`/session/${id}/prompt`), { frame_index: 9, prompts: [{ type: 'box', box: [0.1, 0.1, 0.5, 0.5] }] }), 400, 'frame_out_of_range');
    assert.deepEqual(seen.get('frame_out_of_range (frame range)'), { frame_index: 9, total_frames: 5 });
    expectError('nothing to propagate', await postJson(srv.base, v(`/session/${id}/propagate`), {}), 409, 'no_objects');
    expectError('unknown object', await send(srv.base, 'DELETE', v(`/session/${id}/object/7`)), 404, 'unknown_object');
    expectError('unknown concept', await send(srv.base, 'DELETE', v(`/session/${id}/concept/7`)), 404, 'unknown_concept');
    expectError('bad obj_id', await send(srv.base, 'DELETE', v(`/session/${id}/object/x`)), 400, 'validation_error');
    expectError('unknown session', await get(srv.base, v('/session/sam3-0.nope/status')), 404, 'session_not_found');
    expectError('plain GET of the socket', await get(srv.base, v(`/ws/propagate/${id}`)), 426, 'upgrade_required');
    expectError('bad upload id', await get(srv.base, v('/uploads/nope')), 400, 'validation_error');

    const ws = new WebSocket(`${srv.base.replace('http', 'ws')}${v(`/ws/propagate/${id}`)}`);
    const messages: any[] = [];
    ws.on('message', (d) => messages.push(JSON.parse(d.toString())));
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    // One at a time: each answer before the next message (a run in progress would make the next one a 409).
    for (const [i, m] of ['{', '[]', JSON.stringify({ direction: 'up' }), JSON.stringify({ start_frame_index: 50 }), JSON.stringify({})].entries()) {
      ws.send(m);
      const deadline = Date.now() + 30_000;
      while (messages.length <= i && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    }
    ws.close();
    assert.equal(messages.length, 5, JSON.stringify(messages));
    for (const [i, m] of messages.entries()) {
      assert.equal(m.type, 'error', JSON.stringify(m));
      record(`socket message ${i}`, m.code, m.details ?? {});
    }
    assert.deepEqual(messages.map((m) => m.code), ['invalid_json', 'validation_error', 'validation_error', 'frame_out_of_range', 'no_objects']);
  });

  it('on a server with API keys', async () => {
    expectError('no key', await get(keyed.base, '/models/info'), 401, 'unauthorized');
  });

  it('every details object walked has snake_case keys only', () => {
    assert.ok(seen.size >= 35, `${seen.size} error bodies`);
    const bad = [...seen].flatMap(([what, details]) => camelKeys(details).map((k) => `${what}: ${k}`));
    assert.deepEqual(bad, []);
    // The walk itself finds camelCase where there is some.
    assert.deepEqual(camelKeys({ maxPixels: 1, issues: [{ path: 'a', totalFrames: 2 }] }), ['details.maxPixels', 'details.issues[0].totalFrames']);
  });
});

