/**
 * What a seeded fuzzer found (issue 18), one minimal reproduction each: client mistakes that were
 * 500s (unknown methods, content encodings, __proto__ keys, nameless multipart parts, over-long
 * paths), malformed HTTP answered without a JSON body, and ways to hold the server (deeply
 * nested JSON, an SVG that renders for a minute, a chunked body that never ends, a multipart
 * upload cut off mid-file). Each must be a 4xx JSON error, quickly, and the server must keep
 * answering.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdir, open, readFile, readdir } from 'node:fs/promises';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';

import { decodeImage, ErrorCode } from '../src/index.js';
import { toolEnv, toolPath } from '../src/video/ffmpeg.js';
import { pngImage, tempDir } from './helpers.js';
import { type Reply, type TestServer, b64, blob, get, postJson, postRaw, startServer } from './server-helpers.js';

function expectError(r: Reply, status: number, code: string, message?: RegExp) {
  assert.equal(r.status, status, `status of ${r.text}`);
  assert.match(r.headers.get('content-type') ?? '', /application\/json/);
  assert.equal(r.body.error.code, code, r.text);
  assert.equal(typeof r.body.error.message, 'string');
  if (message) assert.match(r.body.error.message, message);
}

async function send(base: string, method: string, path: string, body?: BodyInit, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await fetch(base + path, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  const json = (res.headers.get('content-type') ?? '').includes('json') ? JSON.parse(text) : text;
  return { status: res.status, headers: res.headers, body: json, text };
}

interface RawAnswer {
  /** What the server wrote before closing (or before `waitMs`). */
  text: string;
  closed: boolean;
  ms: number;
}

/** Writes raw bytes on a fresh connection; resolves when the server closes it or after waitMs. */
function rawHttp(base: string, data: string, waitMs: number): Promise<RawAnswer> {
  const { port, hostname } = new URL(base);
  return new Promise((resolve) => {
    const start = performance.now();
    const socket = net.connect(Number(port), hostname);
    let text = '';
    const done = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closed, ms: performance.now() - start });
    };
    const timer = setTimeout(() => done(false), waitMs);
    socket.on('data', (d) => (text += d.toString('utf8')));
    socket.on('close', () => done(true));
    socket.on('error', () => undefined);
    socket.write(data);
  });
}

/** The JSON body of a raw HTTP/1.1 response. */
function rawBody(text: string): { error: { code: string; message: string } } {
  const at = text.indexOf('\r\n\r\n');
  assert.ok(at > 0, `a complete response: ${JSON.stringify(text)}`);
  return JSON.parse(text.slice(at + 4));
}

/** Where the video upload route has multer write the file as it arrives (video/routes.ts). */
const UPLOAD_TMP = path.join(os.tmpdir(), 'sam3-uploads');

/** Temporary upload files whose bytes start with `marker` (other servers may share the folder). */
async function partialUploads(marker: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir(UPLOAD_TMP).catch(() => [] as string[])) {
    const file = await open(path.join(UPLOAD_TMP, name)).catch(() => undefined);
    if (!file) continue;
    try {
      const head = Buffer.alloc(marker.length);
      const { bytesRead } = await file.read(head, 0, head.length, 0);
      if (bytesRead === head.length && head.toString('latin1') === marker) found.push(name);
    } finally {
      await file.close();
    }
  }
  return found;
}

/** This process's descriptors open on `file` (the server runs in-process); Linux only (/proc). */
function descriptorsOn(file: string): string[] {
  if (!existsSync('/proc/self/fd')) return [];
  return readdirSync('/proc/self/fd')
    .map((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    })
    .filter((target) => target === file || target === `${file} (deleted)`);
}

/**
 * A multipart request whose part `field` (a file) stops after 16 KB of a declared 256 KB: the
 * headers (Content-Length, or Transfer-Encoding: chunked with the bytes sent as one chunk), the
 * part's preamble and the start of the file, then nothing; after waitMs the client gives up and
 * closes. Resolves with the server's answer and the partial temporary files that existed while
 * the client was silent.
 */
async function stalledUpload(base: string, route: string, field: string, chunked: boolean, waitMs = 20_000): Promise<{ answer: RawAnswer; marker: string; partials: string[] }> {
  const marker = `stalled-${randomBytes(12).toString('hex')}`;
  const boundary = `b${randomBytes(8).toString('hex')}`;
  const preamble = `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="clip.mp4"\r\nContent-Type: video/mp4\r\n\r\n`;
  const fileBytes = 256 * 1024;
  const sent = marker + 'x'.repeat(16 * 1024 - marker.length);
  const epilogue = `\r\n--${boundary}--\r\n`;
  const head = `POST ${route} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\n`;
  const body = preamble + sent;
  const request = chunked
    ? `${head}Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n`
    : `${head}Content-Length: ${preamble.length + fileBytes + epilogue.length}\r\n\r\n${body}`;
  const answering = rawHttp(base, request, waitMs);
  let settled = false;
  void answering.then(() => (settled = true));
  let partials: string[] = [];
  while (!settled && partials.length === 0) {
    await new Promise((r) => setTimeout(r, 50));
    partials = await partialUploads(marker);
  }
  return { answer: await answering, marker, partials };
}

/** A 1 s MPEG-4 test pattern made with the bundled ffmpeg. */
async function makeVideo(file: string): Promise<void> {
  const child = spawn(toolPath('ffmpeg'), ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10:duration=1', '-c:v', 'mpeg4', '-pix_fmt', 'yuv420p', '-y', file], { env: toolEnv('ffmpeg'), stdio: 'ignore' });
  assert.equal(await new Promise((resolve) => child.on('close', resolve)), 0);
}

const SVG_BLUR = Buffer.from(
  '<svg xmlns="http://www.w3.org/2000/svg" width="4500" height="4500"><filter id="f"><feGaussianBlur stdDeviation="900"/></filter><rect width="4500" height="4500" fill="red" filter="url(#f)"/></svg>',
);

describe('what the fuzzer found', () => {
  let srv: TestServer;
  let image: string;
  let png: Buffer;
  let media: string;

  before(async () => {
    media = await tempDir('sam3-hardening-');
    await mkdir(path.join(media, 'clips'));
    srv = await startServer({ MEDIA_ROOT: media, CLIENT_IDLE_TIMEOUT_MS: '1500', MAX_BODY_MB: '4' });
    png = await pngImage(64, 48, 5);
    image = b64(png);
  });
  after(async () => srv?.close());

  it('an unknown or unsupported HTTP method on a known path: 405 with Allow, on an unknown path: 404', async () => {
    const link = await send(srv.base, 'LINK', '/docs');
    expectError(link, 405, 'method_not_allowed', /LINK/);
    assert.match(link.headers.get('allow') ?? '', /\bGET\b/);
    assert.deepEqual(link.body.error.details.allowed.includes('GET'), true);
    const put = await send(srv.base, 'PUT', '/api/v1/image/segment');
    expectError(put, 405, 'method_not_allowed', /PUT.*POST/);
    assert.equal(put.headers.get('allow'), 'POST');
    expectError(await send(srv.base, 'LINK', '/no/such/path'), 404, 'not_found');
    expectError(await send(srv.base, 'PURGE', '/api/v1/video/sessions'), 405, 'method_not_allowed');
    // OPTIONS still answers with the methods.
    const options = await send(srv.base, 'OPTIONS', '/api/v1/image/segment');
    assert.equal(options.status, 200);
    assert.equal(options.headers.get('allow'), 'POST');
  });

  it('Content-Encoding other than identity, gzip, deflate or br (one coding, any case): 415 naming the supported ones', async () => {
    for (const enc of ['zstd', 'bogus', 'gzip, gzip', 'x'.repeat(100), 'compress']) {
      const r = await postRaw(srv.base, '/api/v1/image/embed', '{}', { 'content-type': 'application/json', 'content-encoding': enc });
      expectError(r, 415, 'unsupported_media_type', /Content-Encoding/);
      assert.deepEqual(r.body.error.details.supported, ['identity', 'gzip', 'deflate', 'br']);
    }
    const body = JSON.stringify({ image });
    for (const [enc, bytes] of [
      ['GZIP', zlib.gzipSync(body)],
      ['gzip', zlib.gzipSync(body)],
      ['x-gzip', zlib.gzipSync(body)],
      [' Deflate ', zlib.deflateSync(body)],
      ['br', zlib.brotliCompressSync(body)],
      ['identity', Buffer.from(body)],
    ] as const) {
      const r = await postRaw(srv.base, '/api/v1/image/embed', new Uint8Array(bytes), { 'content-type': 'application/json', 'content-encoding': enc });
      assert.equal(r.status, 200, `${enc}: ${r.text}`);
      assert.match(r.body.image_id, /^[0-9a-f]{64}$/);
    }
  });

  it('a body that is not what its Content-Encoding says (not gzip, truncated, broken br): 400', async () => {
    const json = { 'content-type': 'application/json' };
    const gz = zlib.gzipSync(JSON.stringify({ image }));
    expectError(await postRaw(srv.base, '/api/v1/image/embed', '{"image": "x"}', { ...json, 'content-encoding': 'gzip' }), 400, 'invalid_body', /gzip/);
    expectError(await postRaw(srv.base, '/api/v1/image/embed', new Uint8Array(gz.subarray(0, gz.length - 20)), { ...json, 'content-encoding': 'gzip' }), 400, 'invalid_body');
    expectError(await postRaw(srv.base, '/api/v1/image/embed', 'garbage that is not brotli', { ...json, 'content-encoding': 'br' }), 400, 'invalid_body', /br/);
    expectError(await postRaw(srv.base, '/api/v1/image/embed', 'not deflate', { ...json, 'content-encoding': 'deflate' }), 400, 'invalid_body');
    // A decompression bomb: 20 KB of gzip inflating past MAX_BODY_MB.
    const bomb = zlib.gzipSync(Buffer.concat([Buffer.from('{"image": "'), Buffer.alloc(8 * 1024 * 1024, 'A'), Buffer.from('"}')]));
    assert.ok(bomb.length < 64 * 1024);
    expectError(await postRaw(srv.base, '/api/v1/image/embed', new Uint8Array(bomb), { ...json, 'content-encoding': 'gzip' }), 413, 'body_too_large', /MAX_BODY_MB/);
    // A multipart form cannot be content-encoded (the parts are read as they arrive).
    expectError(await postRaw(srv.base, '/api/v1/image/segment', zlib.gzipSync('--x--'), { 'content-type': 'multipart/form-data; boundary=x', 'content-encoding': 'gzip' }), 415, 'unsupported_media_type');
    // A charset other than UTF-8.
    expectError(await postRaw(srv.base, '/api/v1/image/embed', '{}', { 'content-type': 'application/json; charset=latin1' }), 415, 'unsupported_media_type', /UTF-8/);
  });

  it('__proto__ and constructor.prototype keys in JSON: 400 on every JSON endpoint', async () => {
    for (const route of ['/api/v1/image/segment', '/api/v1/image/embed', '/api/v1/image/batch', '/api/v1/image/interactive', '/api/v1/video/session/start']) {
      expectError(await postJson(srv.base, route, '{"__proto__": {"polluted": 1}}'), 400, 'invalid_json', /__proto__/);
    }
    expectError(await postJson(srv.base, '/api/v1/image/segment', `{"image": "${image}", "prompts": [{"type": "text", "text": "a", "__proto__": {"x": 1}}]}`), 400, 'invalid_json');
    expectError(await postJson(srv.base, '/api/v1/image/segment', '{"constructor": {"prototype": {"polluted": 1}}}'), 400, 'invalid_json');
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    // A multipart JSON field goes through the same parser.
    const form = new FormData();
    form.append('image', blob(png), 'a.png');
    form.append('prompts', '[{"type": "text", "text": "a", "__proto__": {"polluted": 1}}]');
    expectError(await postRaw(srv.base, '/api/v1/image/segment', form), 400, 'invalid_json', /prompts/);
  });

  it('a multipart part with an empty name: 400', async () => {
    const body = '--b\r\nContent-Disposition: form-data; name=""\r\n\r\nvalue\r\n--b--\r\n';
    const headers = { 'content-type': 'multipart/form-data; boundary=b' };
    expectError(await postRaw(srv.base, '/api/v1/image/segment', body, headers), 400, 'validation_error', /name/);
    expectError(await postRaw(srv.base, '/api/v1/video/upload', body, headers), 400, 'validation_error', /name/);
  });

  it('a video_path too long for the file system (ENAMETOOLONG): 400, not 500', async () => {
    const r = await postJson(srv.base, '/api/v1/video/session/start', { video_path: `clips/${'a'.repeat(300)}.mp4` });
    expectError(r, 400, 'validation_error', /video_path/);
    expectError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: `${'ab/'.repeat(1300)}x.mp4` }), 404, 'media_not_found');
  });

  it('malformed HTTP (a bad chunk size, an invalid method): a JSON 400, logged at debug', async () => {
    const badChunk = await rawHttp(srv.base, 'POST /api/v1/image/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n', 5000);
    assert.ok(badChunk.closed, 'the connection is closed');
    assert.match(badChunk.text, /^HTTP\/1\.1 400 /);
    assert.match(badChunk.text, /content-type: application\/json/i);
    assert.equal(rawBody(badChunk.text).error.code, 'bad_request');
    const badMethod = await rawHttp(srv.base, 'FO@O /docs HTTP/1.1\r\nHost: x\r\n\r\n', 5000);
    assert.match(badMethod.text, /^HTTP\/1\.1 400 /);
    assert.equal(rawBody(badMethod.text).error.code, 'bad_request');
    const huge = await rawHttp(srv.base, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`, 5000);
    assert.match(huge.text, /^HTTP\/1\.1 431 /);
    assert.equal(rawBody(huge.text).error.code, 'headers_too_large');
    const noisy = srv.logs.filter((l) => l.level >= 40 && /parse error|HTTP layer|malformed/i.test(String(l.msg)));
    assert.deepEqual(noisy, [], 'no warning or error lines for malformed HTTP');
    assert.ok(srv.logs.some((l) => l.level === 20 && /malformed HTTP/.test(String(l.msg))), 'a debug line says what was refused');
    assert.equal((await get(srv.base, '/health')).status, 200);
  });

  it('a refused WebSocket handshake (no such path, a bad key, a POST) gets a JSON error too', async () => {
    const upgrade = (method: string, path: string, key = 'dGhlIHNhbXBsZSBub25jZQ==') =>
      rawHttp(srv.base, `${method} ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`, 5000);
    const nowhere = await upgrade('GET', '/api/v1/nowhere');
    assert.match(nowhere.text, /^HTTP\/1\.1 404 /);
    assert.match(nowhere.text, /content-type: application\/json/i);
    assert.equal(rawBody(nowhere.text).error.code, 'not_found');
    const badKey = await upgrade('GET', '/api/v1/video/ws/propagate/nope', 'short');
    assert.match(badKey.text, /^HTTP\/1\.1 400 /);
    assert.equal(rawBody(badKey.text).error.code, 'bad_request');
    const post = await upgrade('POST', '/api/v1/video/ws/propagate/nope');
    assert.match(post.text, /^HTTP\/1\.1 405 /);
    assert.match(post.text, /allow: GET/i);
    assert.equal(rawBody(post.text).error.code, 'method_not_allowed');
  });

  it('a chunked body that never ends (chunk size ffffffffffffffff) and a bare CRLF get an answer within CLIENT_IDLE_TIMEOUT_MS', async () => {
    const stalled = await rawHttp(srv.base, 'POST /api/v1/image/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{}\r\n', 20_000);
    assert.ok(stalled.closed, `closed (${stalled.ms} ms)`);
    assert.match(stalled.text, /^HTTP\/1\.1 408 /);
    assert.equal(rawBody(stalled.text).error.code, 'request_timeout');
    const crlf = await rawHttp(srv.base, '\r\n\r\n', 20_000);
    assert.ok(crlf.closed, `closed (${crlf.ms} ms)`);
    assert.match(crlf.text, /^HTTP\/1\.1 408 /);
    // A connection that sends nothing is closed without an answer.
    const silent = await rawHttp(srv.base, '', 20_000);
    assert.ok(silent.closed);
    assert.equal(silent.text, '');
    assert.ok(Math.max(stalled.ms, crlf.ms, silent.ms) < 15_000, `answered in ${stalled.ms}, ${crlf.ms}, ${silent.ms} ms`);
    // A slow but steady client is not cut off: a body trickled over 3 s (2x the idle timeout).
    const slow = await new Promise<string>((resolve) => {
      const { port, hostname } = new URL(srv.base);
      const socket = net.connect(Number(port), hostname);
      const payload = JSON.stringify({ image });
      let text = '';
      socket.on('data', (d) => (text += d.toString('utf8')));
      socket.on('close', () => resolve(text));
      socket.write(`POST /api/v1/image/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n`);
      const parts = 6;
      const size = Math.ceil(payload.length / parts);
      let i = 0;
      const timer = setInterval(() => {
        socket.write(payload.slice(i * size, (i + 1) * size));
        if (++i === parts) clearInterval(timer);
      }, 500);
    });
    assert.match(slow, /^HTTP\/1\.1 200 /);
  });

  it('a multipart upload that stalls mid-file (video with Content-Length or chunked, image): 408 JSON, the partial file removed, the server still serving', async () => {
    for (const chunked of [false, true]) {
      const how = chunked ? 'chunked' : 'Content-Length';
      const { answer, marker, partials } = await stalledUpload(srv.base, '/api/v1/video/upload', 'file', chunked);
      assert.equal(partials.length, 1, `${how}: the partial upload was being written to ${UPLOAD_TMP} while the client was silent`);
      assert.ok(answer.closed, `${how}: closed (${answer.ms} ms): ${JSON.stringify(answer.text)}`);
      assert.match(answer.text, /^HTTP\/1\.1 408 /, `${how}: ${JSON.stringify(answer.text)}`);
      assert.match(answer.text, /content-type: application\/json/i);
      const error = rawBody(answer.text).error;
      assert.equal(error.code, 'request_timeout');
      assert.match(error.message, /no body data for 1\.5 s; send the whole body without pausing/);
      assert.ok(answer.ms < 15_000, `${how}: answered in ${answer.ms} ms`);
      assert.deepEqual(await partialUploads(marker), [], `${how}: the partial upload's temporary file is removed before the answer`);
      // ...and the server lets go of it (multer's parser and the file's descriptor are not held).
      const partial = path.join(UPLOAD_TMP, partials[0]!);
      for (let i = 0; i < 100 && descriptorsOn(partial).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(descriptorsOn(partial), [], `${how}: no descriptor left open on the deleted partial file`);
      const uploads = path.join(media, 'uploads');
      assert.deepEqual(existsSync(uploads) ? await readdir(uploads) : [], [], `${how}: nothing is stored under MEDIA_ROOT/uploads`);
    }
    // A client that goes away mid-upload: the partial file is removed, and it is no server fault
    // (the last test checks that no error line was logged).
    const gone = await stalledUpload(srv.base, '/api/v1/video/upload', 'file', false, 1000);
    assert.equal(gone.partials.length, 1, 'the partial upload was being written');
    assert.equal(gone.answer.text, '');
    for (let i = 0; i < 100 && (await partialUploads(gone.marker)).length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(await partialUploads(gone.marker), [], 'an abandoned upload is removed');
    // A multipart image (held in memory) stalls the same way.
    const image = await stalledUpload(srv.base, '/api/v1/image/segment', 'image', false);
    assert.match(image.answer.text, /^HTTP\/1\.1 408 /, JSON.stringify(image.answer.text));
    assert.equal(rawBody(image.answer.text).error.code, 'request_timeout');
    // Other clients are served: a whole upload is stored and listed.
    const dir = await tempDir('sam3-hardening-video-');
    await makeVideo(path.join(dir, 'clip.mp4'));
    const form = new FormData();
    form.append('file', blob(await readFile(path.join(dir, 'clip.mp4')), 'video/mp4'), 'clip.mp4');
    const up = await postRaw(srv.base, '/api/v1/video/upload', form);
    assert.equal(up.status, 200, up.text);
    assert.equal(up.body.video_info.total_frames, 10);
    const listed = await get(srv.base, '/api/v1/video/uploads');
    assert.deepEqual(listed.body.uploads.map((u: { video_id: string }) => u.video_id), [up.body.video_id]);
  });

  it('deeply nested or value-heavy JSON is refused before it is parsed, without stalling the event loop', async () => {
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const deep = '['.repeat(1_500_000) + ']'.repeat(1_500_000);
    const r = await postJson(srv.base, '/api/v1/image/embed', deep);
    expectError(r, 400, 'invalid_json', /nested/);
    assert.equal(r.body.error.details.max_depth, 64);
    const many = `[${'1,'.repeat(1_000_000)}1]`;
    const m = await postJson(srv.base, '/api/v1/image/segment', `{"image": "${image}", "prompts": ${many}}`);
    expectError(m, 400, 'invalid_json', /values/);
    delay.disable();
    // The server's parse would show here (in-process); the scan of 3 MB takes milliseconds.
    assert.ok(delay.max / 1e6 < 1000, `event loop delay max ${delay.max / 1e6} ms`);
  });

  it('JSON-only routes take small bodies: 413 for a 2 MB session start', async () => {
    const r = await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/x.mp4', pad: 'x'.repeat(2 * 1024 * 1024) });
    expectError(r, 413, 'body_too_large', /1 MB/);
  });

  it('SVG (rendered, unbounded work) is refused before decoding: 415; in the library ERR_SAM3_UNSUPPORTED_IMAGE_FORMAT', async () => {
    const start = performance.now();
    const r = await postJson(srv.base, '/api/v1/image/embed', { image: b64(SVG_BLUR) });
    expectError(r, 415, 'unsupported_media_type', /SVG/);
    assert.deepEqual(r.body.error.details.format, 'svg');
    const withXml = Buffer.concat([Buffer.from('\uFEFF  <?xml version="1.0"?>\n'), SVG_BLUR]);
    expectError(await postJson(srv.base, '/api/v1/image/segment', { image: b64(withXml), prompts: [{ type: 'text', text: 'a' }] }), 415, 'unsupported_media_type');
    expectError(await postJson(srv.base, '/api/v1/image/embed', { image: b64(zlib.gzipSync(SVG_BLUR)) }), 415, 'unsupported_media_type', /svgz|compressed/i);
    const form = new FormData();
    form.append('image', blob(SVG_BLUR, 'image/svg+xml'), 'blur.svg');
    form.append('prompts', JSON.stringify([{ type: 'text', text: 'a' }]));
    expectError(await postRaw(srv.base, '/api/v1/image/segment', form), 415, 'unsupported_media_type');
    assert.ok(performance.now() - start < 10_000, 'refused without rendering');
    await assert.rejects(decodeImage(SVG_BLUR), (err: Error & { code?: string }) => err.code === ErrorCode.UnsupportedImageFormat && /SVG/.test(err.message));
    await assert.rejects(decodeImage(Buffer.from('%PDF-1.4\n...')), (err: Error & { code?: string }) => err.code === ErrorCode.UnsupportedImageFormat);
    // Raster images still decode; unknown bytes are still a 400 invalid_image.
    assert.equal((await decodeImage(png)).width, 64);
    expectError(await postJson(srv.base, '/api/v1/image/embed', { image: b64(Buffer.from('just some text, not a picture')) }), 400, 'invalid_image', /not a readable image/);
  });

  it('the server still answers normally after all of the above', async () => {
    const r = await postJson(srv.base, '/api/v1/image/segment', { image, prompts: [{ type: 'text', text: 'a' }] });
    assert.equal(r.status, 200, r.text);
    const errors = srv.logs.filter((l) => l.level >= 50);
    assert.deepEqual(
      errors.map((l) => l.msg),
      [],
      'no error-level log line: every refusal above was a client mistake',
    );
  });
});

describe('the connection backstop (core/connections.ts)', () => {
  it('closes a connection whose body stalls under a handler that never reads it, after two idle periods', async () => {
    const { createServer } = await import('node:http');
    const { pino } = await import('pino');
    const { guardConnections } = await import('../src/server/core/connections.js');
    const IDLE = 300;
    // A handler that neither reads the body nor answers: only the backstop can end this.
    const server = createServer(() => {});
    guardConnections(server, pino({ level: 'silent' }), IDLE);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const t0 = Date.now();
      const closedAfter = await new Promise<number>((resolve, reject) => {
        const c = net.connect(port, '127.0.0.1', () => c.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial'));
        c.on('error', reject);
        c.on('close', () => resolve(Date.now() - t0));
        setTimeout(() => {
          c.destroy();
          reject(new Error(`still open after ${10 * IDLE} ms`));
        }, 10 * IDLE);
      });
      assert.ok(closedAfter >= 2 * IDLE - 50, `closed after ${closedAfter} ms: not before the second idle period`);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
