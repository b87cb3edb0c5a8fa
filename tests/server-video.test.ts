/**
 * The video API over HTTP and WebSocket: sessions on generated videos (bundled ffmpeg) in a temp
 * MEDIA_ROOT, with the tiny fixture bundle's real tracker. Start (path, upload, ids, devices,
 * forbidden / missing / corrupt videos), prompts (box, points, text, rules), propagation in each
 * direction over HTTP and streamed over the WebSocket (order, bad messages, disconnects),
 * one propagation at a time, object removal, reset, status, listing, closing, MAX_SESSIONS,
 * idle expiry, shutdown, a bundle without tracker, WebSocket backpressure, and resident memory over
 * 50 sessions.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFile, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { pino } from 'pino';
import WebSocket from 'ws';

import { Connection, HIGH_WATER_BYTES } from '../src/server/video/socket.js';
import { toolEnv, toolPath } from '../src/video/ffmpeg.js';
import { fixture, tempDir } from './helpers.js';
import { type Reply, type TestServer, blob, get, metric, metrics, postJson, postRaw, startServer } from './server-helpers.js';

const W = 96;
const H = 72;
const FPS = 12;

/** Frame t: a red disc moving right and down, a green bar moving left, a textured background. */
function frameRgb(t: number): Uint8Array {
  const k = t % 12;
  const rgb = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      let c = [30 + ((x * 7 + y * 3) % 40), 40 + ((x * 3 + y * 5) % 30), 60];
      if ((x - (22 + 4 * k)) ** 2 + (y - (26 + k)) ** 2 < 15 ** 2) c = [220, 60, 40];
      if (x >= 60 - 3 * k && x <= 80 - 3 * k && y >= 40 && y <= 65) c = [40, 200, 90];
      rgb[i] = c[0]!;
      rgb[i + 1] = c[1]!;
      rgb[i + 2] = c[2]!;
    }
  }
  return rgb;
}

/** Encodes `frames` generated frames as MPEG-4 in an .mp4 with the bundled ffmpeg. */
async function makeVideo(file: string, frames: number): Promise<void> {
  const child = spawn(toolPath('ffmpeg'), ['-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${W}x${H}`, '-r', String(FPS), '-i', '-', '-c:v', 'mpeg4', '-q:v', '3', '-pix_fmt', 'yuv420p', '-y', file], {
    env: toolEnv('ffmpeg'),
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  for (let t = 0; t < frames; t++) child.stdin.write(frameRgb(t));
  child.stdin.end();
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, `ffmpeg failed: ${stderr}`);
}

// Normalised prompts on frame 0: a box around the disc, points on the bar.
const DISC_BOX = [7 / W, 11 / H, 30 / W, 30 / H];
const BAR_POINTS = [
  { type: 'point', point: [70 / W, 52 / H], label: 1 },
  { type: 'point', point: [0.1, 0.9], label: 0 },
];
const boxPrompt = (box = DISC_BOX) => ({ type: 'box', box });

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function del<T = any>(base: string, p: string): Promise<Reply<T>> {
  const res = await fetch(base + p, { method: 'DELETE' });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (res.headers.get('content-type') ?? '').includes('json') ? JSON.parse(text) : text, text } as Reply<T>;
}

function assertError(r: Reply, status: number, code: string, message?: RegExp): void {
  assert.equal(r.status, status, r.text);
  assert.equal(r.body.error.code, code, r.text);
  assert.ok(r.body.error.request_id, 'the error names the request id');
  if (message) assert.match(r.body.error.message, message);
}

async function start(srv: TestServer, body: Record<string, unknown>): Promise<string> {
  const r = await postJson(srv.base, '/api/v1/video/session/start', body);
  assert.equal(r.status, 200, `${r.text}\n${JSON.stringify(srv.logs.filter((l) => l.req_id === r.body?.error?.request_id && l.level >= 50))}`);
  return r.body.session_id as string;
}

/** A WebSocket client that queues what it receives. */
class Client {
  readonly ws: WebSocket;
  private readonly queue: any[] = [];
  private waiter: ((m: any) => void) | undefined;
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w(m);
      } else this.queue.push(m);
    });
  }

  next(timeoutMs = 60_000): Promise<any> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no WebSocket message in time')), timeoutMs);
      this.waiter = (m) => {
        clearTimeout(timer);
        resolve(m);
      };
    });
  }

  send(value: unknown): void {
    this.ws.send(typeof value === 'string' || Buffer.isBuffer(value) ? value : JSON.stringify(value));
  }

  /** Frame messages until the run ends; returns them and the final message. */
  async run(options: unknown): Promise<{ frames: any[]; last: any }> {
    this.send(options);
    const frames: any[] = [];
    for (;;) {
      const m = await this.next();
      if (m.type !== 'frame') return { frames, last: m };
      frames.push(m);
    }
  }
}

const wsUrl = (srv: TestServer, id: string) => `${srv.base.replace('http', 'ws')}/api/v1/video/ws/propagate/${encodeURIComponent(id)}`;

describe('video API', () => {
  let srv: TestServer;
  let media: string;

  before(async () => {
    media = await tempDir('sam3-media-');
    await mkdir(path.join(media, 'clips'));
    await makeVideo(path.join(media, 'clips', 'short.mp4'), 12);
    await makeVideo(path.join(media, 'long.mp4'), 96);
    await writeFile(path.join(media, 'corrupt.mp4'), Buffer.from('this is not a video at all, just some text '.repeat(50)));
    srv = await startServer({ MEDIA_ROOT: media, VIDEO_FRAME_CACHE_MB: '64', LOG_LEVEL: 'info' });
  });
  after(async () => srv?.close());

  describe('session start', () => {
    it('opens a session on a path inside MEDIA_ROOT and describes the video', async () => {
      const r = await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/short.mp4' });
      assert.equal(r.status, 200, r.text);
      assert.match(r.body.session_id, /^[0-9a-f-]{36}$/);
      assert.equal(r.body.status, 'ready');
      assert.equal(r.body.device, 'cpu#0');
      assert.deepEqual(r.body.video_info, { total_frames: 12, fps: FPS, resolution: { width: W, height: H }, duration_seconds: 1 });
      assert.equal((await del(srv.base, `/api/v1/video/session/${r.body.session_id}`)).status, 200);
    });

    it('uploads a video, then opens a session by its video_id', async () => {
      const form = new FormData();
      form.append('file', blob(await readFile(path.join(media, 'clips', 'short.mp4')), 'video/mp4'), 'my clip.mp4');
      const up = await postRaw(srv.base, '/api/v1/video/upload', form);
      assert.equal(up.status, 200, up.text);
      assert.match(up.body.video_id, /^[0-9a-f-]{36}$/);
      assert.equal(up.body.video_info.total_frames, 12);
      const r = await postJson(srv.base, '/api/v1/video/session/start', { video_id: up.body.video_id, session_id: 'from-upload' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.session_id, 'from-upload');
      assert.equal(r.body.video_info.total_frames, 12);
      const listed = (await get(srv.base, '/api/v1/video/sessions')).body.sessions.find((s: any) => s.session_id === 'from-upload');
      assert.equal(listed.video_id, up.body.video_id);
      assert.equal(listed.video_path, null);
      assert.equal((await del(srv.base, '/api/v1/video/session/from-upload')).status, 200);
    });

    it('refuses uploads that are not videos, have no file part, or are not multipart', async () => {
      const garbage = new FormData();
      garbage.append('file', blob(Buffer.from('not a video '.repeat(100))), 'fake.mp4');
      assertError(await postRaw(srv.base, '/api/v1/video/upload', garbage), 400, 'invalid_video');
      const badExt = new FormData();
      badExt.append('file', blob(Buffer.from('x')), 'notes.txt');
      assertError(await postRaw(srv.base, '/api/v1/video/upload', badExt), 400, 'invalid_video', /extension/);
      const noFile = new FormData();
      noFile.append('other', 'x');
      assertError(await postRaw(srv.base, '/api/v1/video/upload', noFile), 400, 'validation_error', /'file'/);
      assertError(await postJson(srv.base, '/api/v1/video/upload', { file: 'x' }), 415, 'unsupported_media_type');
      assert.equal((await readdir(path.join(media, 'uploads'))).length, 1, 'refused uploads are not kept (only the good one of the previous test)');
    });

    it('custom session ids: taken is 409, malformed is 400', async () => {
      await start(srv, { video_path: 'clips/short.mp4', session_id: 'dup_1' });
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/short.mp4', session_id: 'dup_1' }), 409, 'session_exists', /dup_1/);
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/short.mp4', session_id: 'bad id/../x' }), 400, 'validation_error', /session_id/);
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/short.mp4', session_id: 'x'.repeat(65) }), 400, 'validation_error');
      assert.equal((await del(srv.base, '/api/v1/video/session/dup_1')).status, 200);
    });

    it('gpu_ids choose among DEVICES by index; out of range is 400', async () => {
      const r = await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/short.mp4', gpu_ids: [3] });
      assertError(r, 400, 'validation_error', /gpu_ids\[0\]: device index 3 is out of range; this server has 1 device/);
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/short.mp4', gpu_ids: [-1] }), 400, 'validation_error');
      const ok = await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/short.mp4', gpu_ids: [0] });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.body.device, 'cpu#0');
      await del(srv.base, `/api/v1/video/session/${ok.body.session_id}`);
    });

    it('paths outside MEDIA_ROOT are 403, missing ones 404, corrupt videos 400, bad bodies 400', async () => {
      for (const p of ['../outside.mp4', '/etc/passwd', 'clips/../../x.mp4']) {
        assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: p }), 403, 'forbidden_path');
      }
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/missing.mp4' }), 404, 'media_not_found');
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_id: '6f1c1d2e-0000-4000-8000-000000000000' }), 404, 'media_not_found');
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'corrupt.mp4' }), 400, 'invalid_video');
      assertError(await postJson(srv.base, '/api/v1/video/session/start', {}), 400, 'validation_error', /exactly one of video_path and video_id/);
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/short.mp4', video_id: 'x' }), 400, 'validation_error', /exactly one/);
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clips/short.mp4', fps: 3 }), 400, 'validation_error', /unknown field 'fps'/);
      assertError(await postJson(srv.base, '/api/v1/video/session/start', '{"video_path": '), 400, 'invalid_json');
      assert.equal(srv.svc.sessions.size, 0, 'no failed start leaves a session behind');
    });
  });

  describe('prompts and propagation', () => {
    let id: string;
    before(async () => {
      id = await start(srv, { video_path: 'clips/short.mp4', session_id: 'track' });
    });
    after(async () => {
      await del(srv.base, `/api/v1/video/session/${id}`);
    });

    it('a box prompt creates object 1; points create object 2; masks are at the frame size', async () => {
      const r = await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: [boxPrompt()] });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.frame_index, 0);
      assert.equal(r.body.obj_id, 1);
      assert.deepEqual(r.body.obj_ids, [1]);
      assert.equal(r.body.masks.length, 1);
      assert.deepEqual(r.body.masks[0].size, [H, W]);
      assert.equal(typeof r.body.masks[0].counts, 'string');
      assert.equal(r.body.boxes[0].length, 4);
      assert.ok(r.body.scores[0] >= 0 && r.body.scores[0] <= 1);
      const p = await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: BAR_POINTS, obj_id: null });
      assert.equal(p.status, 200, p.text);
      assert.deepEqual(p.body.obj_ids, [2]);
      // Points and a box refine one object, by id.
      const refine = await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 3, prompts: [boxPrompt([0.3, 0.2, 0.35, 0.45]), BAR_POINTS[1]], obj_id: 1 });
      assert.equal(refine.status, 200, refine.text);
      assert.deepEqual(refine.body.obj_ids, [1]);
      const st = (await get(srv.base, `/api/v1/video/session/${id}/status`)).body;
      assert.deepEqual(st.objects, [1, 2]);
      assert.equal(st.prompts, 3);
      // Labels as booleans are the same labels as 1 / 0; masks in another format on request.
      const asBool = BAR_POINTS.map((p) => ({ ...p, label: p.label === 1 }));
      const again = await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: BAR_POINTS, obj_id: 2, mask_format: 'polygon' });
      const bools = await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: asBool, obj_id: 2, mask_format: 'png' });
      assert.equal(again.status, 200, again.text);
      assert.equal(bools.status, 200, bools.text);
      assert.deepEqual(again.body.masks[0].size, [H, W]);
      assert.ok(Array.isArray(again.body.masks[0].polygons));
      assert.equal(typeof bools.body.masks[0].png, 'string');
      assert.deepEqual(bools.body.scores, again.body.scores);
    });

    it('refuses bad prompts with 400s that say what to change', async () => {
      const url = `/api/v1/video/session/${id}/prompt`;
      const cases: Array<[unknown, string, RegExp]> = [
        [{ frame_index: 12, prompts: [boxPrompt()] }, 'frame_out_of_range', /frame_index 12 is out of range: the video has 12 frames, indices 0 to 11/],
        [{ frame_index: -1, prompts: [boxPrompt()] }, 'validation_error', /frame_index/],
        [{ frame_index: 0.5, prompts: [boxPrompt()] }, 'validation_error', /frame_index/],
        [{ frame_index: 0, prompts: [{ type: 'text', text: 'disc' }, boxPrompt()] }, 'validation_error', /text prompt cannot be combined/],
        [{ frame_index: 0, prompts: [{ type: 'text', text: 'disc' }], obj_id: 1 }, 'validation_error', /takes no obj_id/],
        [{ frame_index: 0, prompts: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }, 'validation_error', /one text prompt per request/],
        [{ frame_index: 0, prompts: [boxPrompt(), boxPrompt()] }, 'validation_error', /at most one box/],
        [{ frame_index: 0, prompts: [{ type: 'box', box: DISC_BOX, label: false }] }, 'validation_error', /negative box/],
        [{ frame_index: 0, prompts: [{ type: 'box', box: [0.5, 0.5, 0.6, 0.1] }] }, 'validation_error', /outside the frame/],
        [{ frame_index: 0, prompts: [{ type: 'point', point: [1.5, 0.2], label: 1 }] }, 'validation_error', /outside the frame/],
        [{ frame_index: 0, prompts: [{ type: 'point', point: [0.5, 0.2], label: 2 }] }, 'validation_error', /label must be true or 1/],
        [{ frame_index: 0, prompts: [{ type: 'point', point: [0.5] , label: 1 }] }, 'validation_error', /point must be \[x, y\]/],
        [{ frame_index: 0, prompts: [{ type: 'circle' }] }, 'validation_error', /type 'text'/],
        [{ frame_index: 0, prompts: [] }, 'validation_error', /prompts is empty/],
        [{ frame_index: 0, prompts: [boxPrompt()], obj_id: 'one' }, 'validation_error', /obj_id/],
        [{ frame_index: 0, prompts: [boxPrompt()], confidence: 0.3 }, 'validation_error', /unknown field 'confidence'/],
        [{ prompts: [boxPrompt()] }, 'validation_error', /frame_index: this field is required/],
      ];
      for (const [body, code, message] of cases) assertError(await postJson(srv.base, url, body), 400, code, message);
    });

    it('propagates forward over every frame with every object on every frame', async () => {
      const r = await postJson(srv.base, `/api/v1/video/session/${id}/propagate`, {});
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.session_id, id);
      assert.deepEqual(Object.keys(r.body.results).map(Number).sort((a, b) => a - b), range(0, 11));
      assert.equal(r.body.total_frames, 12);
      assert.equal(r.body.frames_processed, 12);
      assert.ok(r.body.processing_time_ms > 0);
      for (const [key, frame] of Object.entries<any>(r.body.results)) {
        assert.equal(frame.frame_index, Number(key));
        assert.deepEqual(frame.objects.map((o: any) => o.id).sort(), [1, 2], `frame ${key}`);
        for (const o of frame.objects) {
          assert.deepEqual(o.mask.size, [H, W]);
          assert.equal(o.box.length, 4);
          assert.equal(typeof o.score, 'number');
        }
      }
      const st = (await get(srv.base, `/api/v1/video/session/${id}/status`)).body;
      assert.equal(st.frames_tracked, 12);
      assert.equal(st.propagating, false);
    });

    it('backward, both and max_frames give exactly the frames asked for, each once', async () => {
      const frames = async (body: Record<string, unknown>) => {
        const r = await postJson(srv.base, `/api/v1/video/session/${id}/propagate`, body);
        assert.equal(r.status, 200, r.text);
        const keys = Object.keys(r.body.results).map(Number).sort((a, b) => a - b);
        assert.equal(r.body.frames_processed, keys.length);
        assert.equal(r.body.total_frames, 12, "total_frames is the video's length, as in video_info");
        for (const f of Object.values<any>(r.body.results)) assert.deepEqual(f.objects.map((o: any) => o.id).sort(), [1, 2]);
        return keys;
      };
      assert.deepEqual(await frames({ direction: 'backward', start_frame_index: 7 }), range(0, 7));
      assert.deepEqual(await frames({ direction: 'both', start_frame_index: 5, max_frames: 2 }), range(3, 7));
      assert.deepEqual(await frames({ direction: 'forward', start_frame_index: 9, max_frames: null }), range(9, 11));
      assert.deepEqual(await frames({ direction: 'forward', start_frame_index: 2, max_frames: 0 }), [2]);
      assertError(await postJson(srv.base, `/api/v1/video/session/${id}/propagate`, { start_frame_index: 12 }), 400, 'frame_out_of_range', /0 to 11/);
      assertError(await postJson(srv.base, `/api/v1/video/session/${id}/propagate`, { direction: 'sideways' }), 400, 'validation_error', /direction must be/);
      assertError(await postJson(srv.base, `/api/v1/video/session/${id}/propagate`, { stream: true }), 400, 'validation_error', /ws\/propagate/);
      assertError(await postJson(srv.base, `/api/v1/video/session/${id}/propagate`, { max_frames: -2 }), 400, 'validation_error', /max_frames/);
    });

    it('streams frames over the WebSocket in order, then complete; the socket takes another run', async () => {
      const c = new Client(wsUrl(srv, id));
      await c.opened;
      const { frames, last } = await c.run({ direction: 'forward', start_frame_index: 0 });
      assert.deepEqual(
        frames.map((f) => f.frame_index),
        range(0, 11),
      );
      for (const f of frames) assert.deepEqual(f.objects.map((o: any) => o.id).sort(), [1, 2]);
      assert.equal(last.type, 'complete');
      assert.equal(last.total_frames, 12);
      assert.equal(last.frames_processed, 12);
      const back = await c.run({ type: 'propagate', direction: 'backward', start_frame_index: 4, mask_format: 'polygon' });
      assert.deepEqual(
        back.frames.map((f) => f.frame_index),
        [4, 3, 2, 1, 0],
      );
      for (const f of back.frames) for (const o of f.objects) assert.ok(Array.isArray(o.mask.polygons) && o.mask.size[0] === H, 'mask_format over the WebSocket');
      assert.equal(back.last.type, 'complete');
      c.ws.close();
      assert.equal((await c.closed).code, 1005);
    });

    it('WebSocket: bad messages get an error and leave the socket usable', async () => {
      const c = new Client(wsUrl(srv, id));
      await c.opened;
      c.send('this is not json');
      let m = await c.next();
      assert.equal(m.type, 'error');
      assert.equal(m.code, 'invalid_json');
      c.send(Buffer.from([1, 2, 3]));
      m = await c.next();
      assert.equal(m.code, 'validation_error');
      assert.match(m.message, /binary/);
      c.send('[1, 2]');
      assert.equal((await c.next()).code, 'validation_error');
      c.send({ direction: 'sideways' });
      m = await c.next();
      assert.equal(m.code, 'validation_error');
      assert.match(m.message, /direction/);
      c.send({ start_frame_index: 99 });
      m = await c.next();
      assert.equal(m.code, 'frame_out_of_range');
      c.send({ type: 'cancel' }); // nothing running: answered at once, the socket stays usable
      assert.deepEqual(await c.next(), { type: 'cancelled', was_running: false });
      const { frames, last } = await c.run({ start_frame_index: 10 });
      assert.deepEqual(
        frames.map((f) => f.frame_index),
        [10, 11],
      );
      assert.equal(last.type, 'complete');
      assert.deepEqual([last.total_frames, last.frames_processed], [12, 2], 'total_frames: the video; frames_processed: this run');
      c.ws.close();
      await c.closed;
    });

    it('a text prompt makes an object of every detection; text on frame 11 works like any frame', async () => {
      const other = await start(srv, { video_path: 'clips/short.mp4' });
      const r = await postJson(srv.base, `/api/v1/video/session/${other}/prompt`, { frame_index: 11, prompts: [{ type: 'text', text: 'red disc' }], threshold: 0 });
      assert.equal(r.status, 200, r.text);
      assert.ok(r.body.obj_ids.length > 0, 'threshold 0 keeps every detection');
      assert.equal(r.body.obj_id, r.body.obj_ids[0]);
      assert.equal(new Set(r.body.obj_ids).size, r.body.obj_ids.length);
      assert.equal(r.body.masks.length, r.body.obj_ids.length);
      assert.equal(r.body.scores.length, r.body.obj_ids.length);
      const none = await postJson(srv.base, `/api/v1/video/session/${other}/prompt`, { frame_index: 0, prompts: [{ type: 'text', text: 'zebra' }], threshold: 1 });
      assert.equal(none.status, 200, none.text);
      assert.deepEqual(none.body.obj_ids, []);
      assert.equal(none.body.obj_id, null);
      assert.equal((await del(srv.base, `/api/v1/video/session/${other}`)).status, 200);
    });
  });

  describe('one propagation at a time, removal, reset, closing', () => {
    it('a second propagation is 409, and so are prompts and resets during it; DELETE cancels it and frees the session', async () => {
      const id = await start(srv, { video_path: 'long.mp4', session_id: 'busy' });
      assert.equal((await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: [boxPrompt()] })).status, 200);
      const first = postJson(srv.base, `/api/v1/video/session/${id}/propagate`, {});
      while (!(await get(srv.base, `/api/v1/video/session/${id}/status`)).body.propagating) await sleep(10);
      const st = (await get(srv.base, `/api/v1/video/session/${id}/status`)).body;
      assert.equal(st.status, 'propagating');
      assert.equal(st.expires_at, null, 'a propagating session does not expire');
      assertError(await postJson(srv.base, `/api/v1/video/session/${id}/propagate`, {}), 409, 'session_busy', /propagating/);
      assertError(await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 1, prompts: [boxPrompt()] }), 409, 'session_busy');
      assertError(await postJson(srv.base, `/api/v1/video/session/${id}/reset`, {}), 409, 'session_busy');
      assertError(await del(srv.base, `/api/v1/video/session/${id}/object/1`), 409, 'session_busy');
      const ws = new Client(wsUrl(srv, id));
      await ws.opened;
      ws.send({});
      const m = await ws.next();
      assert.equal(m.code, 'session_busy');
      const closed = await del(srv.base, `/api/v1/video/session/${id}`);
      assert.equal(closed.status, 200, closed.text);
      assert.deepEqual(closed.body, { session_id: id, status: 'closed' });
      assertError(await first, 409, 'session_closed', /closed while propagating/);
      assertError(await get(srv.base, `/api/v1/video/session/${id}/status`), 404, 'session_not_found');
      ws.ws.close();
      await ws.closed;
      const text = await metrics(srv.base);
      assert.ok((metric(text, 'sam3_video_propagations_total', { outcome: 'cancelled' }) ?? 0) >= 1);
    });

    it('closing the WebSocket cancels its propagation', async () => {
      const id = await start(srv, { video_path: 'long.mp4' });
      assert.equal((await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: [boxPrompt()] })).status, 200);
      const before = metric(await metrics(srv.base), 'sam3_video_frames_propagated_total') ?? 0;
      const c = new Client(wsUrl(srv, id));
      await c.opened;
      c.send({ direction: 'forward' });
      const first = await c.next();
      assert.equal(first.type, 'frame');
      c.ws.terminate();
      let st = (await get(srv.base, `/api/v1/video/session/${id}/status`)).body;
      const deadline = Date.now() + 10_000;
      while (st.propagating && Date.now() < deadline) {
        await sleep(20);
        st = (await get(srv.base, `/api/v1/video/session/${id}/status`)).body;
      }
      assert.equal(st.propagating, false, 'the propagation stopped after the client went away');
      const propagated = (metric(await metrics(srv.base), 'sam3_video_frames_propagated_total') ?? 0) - before;
      assert.ok(propagated < 96, `${propagated} of 96 frames tracked before the cancel`);
      assert.ok(st.frames_tracked < 96);
      // {type: cancel} stops a run too, answered by {type: cancelled}.
      const c2 = new Client(wsUrl(srv, id));
      await c2.opened;
      c2.send({ direction: 'forward' });
      assert.equal((await c2.next()).type, 'frame');
      c2.send({ type: 'cancel' });
      let m = await c2.next();
      while (m.type === 'frame') m = await c2.next();
      assert.equal(m.type, 'cancelled');
      assert.equal(m.was_running, true);
      assert.ok(m.frames_processed >= 1 && m.frames_processed < 96, String(m.frames_processed));
      assert.equal(m.total_frames, 96);
      c2.ws.close();
      await c2.closed;
      await del(srv.base, `/api/v1/video/session/${id}`);
    });

    it('an HTTP client that disconnects mid-propagation cancels it', async () => {
      const id = await start(srv, { video_path: 'long.mp4' });
      assert.equal((await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: [boxPrompt()] })).status, 200);
      const controller = new AbortController();
      const req = fetch(`${srv.base}/api/v1/video/session/${id}/propagate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}', signal: controller.signal }).catch((e: Error) => e);
      while (!(await get(srv.base, `/api/v1/video/session/${id}/status`)).body.propagating) await sleep(10);
      controller.abort();
      await req;
      let st = (await get(srv.base, `/api/v1/video/session/${id}/status`)).body;
      const deadline = Date.now() + 10_000;
      while (st.propagating && Date.now() < deadline) {
        await sleep(20);
        st = (await get(srv.base, `/api/v1/video/session/${id}/status`)).body;
      }
      assert.equal(st.propagating, false);
      assert.ok(st.frames_tracked < 96, `${st.frames_tracked} frames tracked`);
      await del(srv.base, `/api/v1/video/session/${id}`);
    });

    it('removing an object: later frames lack it, prompting it by id is 404, a prompt without id adds a new one', async () => {
      const id = await start(srv, { video_path: 'clips/short.mp4' });
      const url = `/api/v1/video/session/${id}`;
      await postJson(srv.base, `${url}/prompt`, { frame_index: 0, prompts: [boxPrompt()] });
      await postJson(srv.base, `${url}/prompt`, { frame_index: 0, prompts: BAR_POINTS });
      const removed = await del(srv.base, `${url}/object/1`);
      assert.equal(removed.status, 200, removed.text);
      assert.deepEqual(removed.body, { session_id: id, obj_id: 1, objects: [2] });
      assertError(await del(srv.base, `${url}/object/1`), 404, 'unknown_object');
      assertError(await del(srv.base, `${url}/object/77`), 404, 'unknown_object');
      assertError(await del(srv.base, `${url}/object/abc`), 400, 'validation_error', /integer/);
      assertError(await postJson(srv.base, `${url}/prompt`, { frame_index: 0, prompts: [boxPrompt()], obj_id: 1 }), 404, 'unknown_object', /removed/);
      const fresh = await postJson(srv.base, `${url}/prompt`, { frame_index: 0, prompts: [boxPrompt()] });
      assert.equal(fresh.status, 200, fresh.text);
      assert.deepEqual(fresh.body.obj_ids, [3], 'removed ids are not reused');
      const r = await postJson(srv.base, `${url}/propagate`, { max_frames: 3 });
      assert.equal(r.status, 200, r.text);
      for (const f of Object.values<any>(r.body.results)) assert.deepEqual(f.objects.map((o: any) => o.id).sort(), [2, 3]);
      await del(srv.base, url);
    });

    it('reset clears prompts and objects; propagating with no object is 409', async () => {
      const id = await start(srv, { video_path: 'clips/short.mp4' });
      const url = `/api/v1/video/session/${id}`;
      assertError(await postJson(srv.base, `${url}/propagate`, {}), 409, 'no_objects', /add a prompt/);
      await postJson(srv.base, `${url}/prompt`, { frame_index: 2, prompts: [boxPrompt()] });
      assert.equal((await postJson(srv.base, `${url}/propagate`, { max_frames: 1 })).body.frames_processed, 2);
      const r = await postJson(srv.base, `${url}/reset`, {});
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body, { session_id: id, status: 'ready', objects: [] });
      const st = (await get(srv.base, `${url}/status`)).body;
      assert.deepEqual([st.prompts, st.num_objects, st.frames_tracked], [0, 0, 0]);
      assertError(await postJson(srv.base, `${url}/propagate`, {}), 409, 'no_objects');
      const again = await postJson(srv.base, `${url}/prompt`, { frame_index: 0, prompts: [boxPrompt()] });
      assert.deepEqual(again.body.obj_ids, [1], 'ids start over after a reset');
      await del(srv.base, url);
    });

    it('status and the session list describe each session', async () => {
      const id = await start(srv, { video_path: 'clips/short.mp4', session_id: 'described' });
      await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: [boxPrompt()] });
      const st = await get(srv.base, `/api/v1/video/session/${id}/status`);
      assert.equal(st.status, 200);
      const b = st.body;
      assert.equal(b.session_id, id);
      assert.equal(b.status, 'ready');
      assert.equal(b.device, 'cpu#0');
      assert.equal(b.total_frames, 12);
      assert.deepEqual(b.objects, [1]);
      assert.equal(b.num_objects, 1);
      assert.equal(b.prompts, 1);
      assert.ok(b.memory_bytes > 0, 'memory held is reported');
      assert.equal(b.propagating, false);
      assert.ok(Date.parse(b.created_at) <= Date.parse(b.last_activity));
      assert.ok(Date.parse(b.expires_at) > Date.now());
      assert.deepEqual(b.video_info.resolution, { width: W, height: H });
      const list = await get(srv.base, '/api/v1/video/sessions');
      assert.equal(list.status, 200);
      assert.equal(list.body.max_sessions, 8);
      assert.equal(list.body.count, list.body.sessions.length);
      const mine = list.body.sessions.find((s: any) => s.session_id === id);
      assert.deepEqual(
        { ...mine, created_at: undefined, last_activity: undefined },
        { session_id: id, video_info: b.video_info, video_path: 'clips/short.mp4', video_id: null, device: 'cpu#0', objects: [1], concepts: [], propagating: false, created_at: undefined, last_activity: undefined },
      );
      const health = await get(srv.base, '/health');
      assert.equal(health.body.active_sessions, list.body.count);
      const info = (await get(srv.base, '/models/info')).body.video;
      assert.equal(info.supported, true);
      assert.equal(info.active_sessions, list.body.count);
      assert.equal(info.max_sessions, 8);
      const text = await metrics(srv.base);
      assert.equal(metric(text, 'sam3_video_sessions_active', { device: 'cpu#0' }), list.body.count);
      assert.ok((metric(text, 'sam3_video_session_memory_bytes', { device: 'cpu#0' }) ?? 0) > 0);
      assert.ok((metric(text, 'sam3_video_sessions_opened_total') ?? 0) >= list.body.count);
      assert.ok((metric(text, 'sam3_video_frames_propagated_total', { device: 'cpu#0' }) ?? 0) > 0);
      assert.ok((metric(text, 'sam3_video_propagate_frame_seconds_count', { device: 'cpu#0' }) ?? 0) > 0);
      assert.ok((metric(text, 'sam3_video_propagation_fps', { device: 'cpu#0' }) ?? 0) > 0);
      assert.ok((metric(text, 'sam3_video_sessions_closed_total', { reason: 'deleted' }) ?? 0) > 0);
      assert.equal((await del(srv.base, `/api/v1/video/session/${id}`)).status, 200);
      assert.equal((await get(srv.base, '/api/v1/video/sessions')).body.sessions.find((s: any) => s.session_id === id), undefined);
    });

    it('an unknown session is 404 on every route, over HTTP and WebSocket', async () => {
      const u = '/api/v1/video/session/nope';
      assertError(await postJson(srv.base, `${u}/prompt`, { frame_index: 0, prompts: [boxPrompt()] }), 404, 'session_not_found', /nope/);
      assertError(await postJson(srv.base, `${u}/propagate`, {}), 404, 'session_not_found');
      assertError(await get(srv.base, `${u}/status`), 404, 'session_not_found');
      assertError(await del(srv.base, `${u}/object/1`), 404, 'session_not_found');
      assertError(await postJson(srv.base, `${u}/reset`, {}), 404, 'session_not_found');
      assertError(await del(srv.base, u), 404, 'session_not_found');
      const c = new Client(wsUrl(srv, 'nope'));
      await c.opened;
      const m = await c.next();
      assert.equal(m.type, 'error');
      assert.equal(m.code, 'session_not_found');
      assert.equal((await c.closed).code, 4404);
      // Not a WebSocket path: the upgrade is refused; a plain GET of the WebSocket path is 426.
      await assert.rejects(new Client(`${srv.base.replace('http', 'ws')}/api/v1/video/ws/other`).opened, /404/);
      assertError(await get(srv.base, '/api/v1/video/ws/propagate/nope'), 426, 'upgrade_required', /WebSocket/);
    });
  });

  describe('concept tracking (text prompts)', () => {
    it('a text prompt adds a concept; REST and WebSocket propagation carry it on every object; a concept is removed by id', async () => {
      const id = await start(srv, { video_path: 'clips/short.mp4' });
      const url = `/api/v1/video/session/${id}`;
      const p = await postJson(srv.base, `${url}/prompt`, { frame_index: 0, prompts: [{ type: 'text', text: 'red disc' }], threshold: 0 });
      assert.equal(p.status, 200, p.text);
      assert.equal(p.body.concept, 'red disc');
      assert.ok(p.body.obj_ids.length > 0);
      const st = (await get(srv.base, `${url}/status`)).body;
      assert.deepEqual(st.concepts, [{ concept_id: 0, text: 'red disc', objects: p.body.obj_ids.filter((o: number) => st.objects.includes(o)) }]);
      const again = await postJson(srv.base, `${url}/prompt`, { frame_index: 0, prompts: [{ type: 'text', text: 'red disc' }], threshold: 0 });
      assert.equal(again.status, 200, again.text);
      assert.equal((await get(srv.base, `${url}/status`)).body.concepts.length, 1, 'the same text is the same concept');
      const box = await postJson(srv.base, `${url}/prompt`, { frame_index: 0, prompts: [boxPrompt()] });
      assert.equal(box.body.concept, null);

      const rest = await postJson(srv.base, `${url}/propagate`, { max_frames: 3 });
      assert.equal(rest.status, 200, rest.text);
      const frames = Object.values(rest.body.results) as any[];
      assert.deepEqual(frames.map((f) => f.frame_index), [0, 1, 2, 3]);
      for (const f of frames) for (const o of f.objects) assert.equal(o.concept, o.id === box.body.obj_id ? null : 'red disc');

      const c = new Client(wsUrl(srv, id));
      await c.opened;
      const { frames: streamed, last } = await c.run({ direction: 'backward', start_frame_index: 3, max_frames: 2 });
      assert.equal(last.type, 'complete');
      assert.deepEqual(streamed.map((f) => f.frame_index), [3, 2, 1]);
      for (const f of streamed) for (const o of f.objects) assert.ok(o.concept === 'red disc' || o.id === box.body.obj_id);
      c.ws.close();
      await c.closed;

      assertError(await del(srv.base, `${url}/concept/7`), 404, 'unknown_concept', /concept 7 is not tracked/);
      assertError(await del(srv.base, `${url}/concept/red`), 400, 'validation_error', /concept_id/);
      const removed = await del(srv.base, `${url}/concept/0`);
      assert.equal(removed.status, 200, removed.text);
      assert.equal(removed.body.concept_id, 0);
      assert.deepEqual(removed.body.objects, [box.body.obj_id]);
      assert.deepEqual((await get(srv.base, `${url}/status`)).body.concepts, []);
      assertError(await del(srv.base, `${url}/concept/0`), 404, 'unknown_concept');
      assertError(await postJson(srv.base, `${url}/prompt`, { frame_index: 0, prompts: [{ type: 'text', text: '  ' }] }), 400, 'validation_error', /text is empty/);
      assert.equal((await del(srv.base, url)).status, 200);
    });

    it('a session with only a concept that found nothing yet still propagates (objects may enter later)', async () => {
      const id = await start(srv, { video_path: 'clips/short.mp4' });
      const url = `/api/v1/video/session/${id}`;
      const p = await postJson(srv.base, `${url}/prompt`, { frame_index: 0, prompts: [{ type: 'text', text: 'zebra' }], threshold: 1 });
      assert.deepEqual(p.body.obj_ids, []);
      const rest = await postJson(srv.base, `${url}/propagate`, { max_frames: 2 });
      assert.equal(rest.status, 200, rest.text);
      assert.equal(rest.body.frames_processed, 3);
      assert.equal(rest.body.total_frames, 12);
      assert.equal((await del(srv.base, url)).status, 200);
    });
  });

  it('opening and closing 50 sessions keeps resident memory bounded', async () => {
    const cycle = async () => {
      const id = await start(srv, { video_path: 'clips/short.mp4' });
      const p = await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: [boxPrompt()] });
      assert.equal(p.status, 200, p.text);
      assert.equal((await del(srv.base, `/api/v1/video/session/${id}`)).status, 200);
    };
    for (let i = 0; i < 5; i++) await cycle();
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const warm = process.memoryUsage().rss;
    for (let i = 0; i < 50; i++) await cycle();
    gc?.();
    const after50 = process.memoryUsage().rss;
    const mib = (b: number) => (b / 1024 / 1024).toFixed(1);
    console.log(`# RSS after warm-up: ${mib(warm)} MiB; after 50 open/prompt/close cycles: ${mib(after50)} MiB (growth ${mib(after50 - warm)} MiB, bound 64 MiB)`);
    assert.ok(after50 - warm < 64 * 1024 * 1024, `RSS grew by ${mib(after50 - warm)} MiB`);
    assert.equal(srv.svc.sessions.size, 0);
  });
});

describe('WebSocket backpressure', () => {
  it('sends at once below the high-water mark, and waits for the write beyond it', async () => {
    const written: Array<() => void> = [];
    const fake = {
      readyState: WebSocket.OPEN as number,
      bufferedAmount: 0,
      sent: [] as string[],
      send(data: string, cb?: () => void) {
        this.sent.push(data);
        if (cb) written.push(cb);
      },
    };
    const conn = new Connection(fake as unknown as WebSocket, 's', pino({ level: 'silent' }));
    await conn.send({ type: 'frame', frame_index: 0 });
    assert.equal(fake.sent.length, 1);
    assert.equal(written.length, 0, 'no wait while the buffer is small');
    fake.bufferedAmount = HIGH_WATER_BYTES;
    let done = false;
    const pending = conn.send({ type: 'frame', frame_index: 1 }).then(() => (done = true));
    await sleep(20);
    assert.equal(fake.sent.length, 2);
    assert.equal(done, false, 'the sender waits until the frame is written out');
    written[0]!();
    await pending;
    assert.equal(done, true);
    fake.readyState = WebSocket.CLOSED;
    await conn.send({ type: 'frame', frame_index: 2 });
    assert.equal(fake.sent.length, 2, 'nothing is sent on a closed socket');
  });
});

describe('video session limits and lifecycle', () => {
  let media: string;
  before(async () => {
    media = await tempDir('sam3-media-');
    await makeVideo(path.join(media, 'short.mp4'), 12);
  });

  it('MAX_SESSIONS: one more is 429 with Retry-After; closing one makes room', async () => {
    const srv = await startServer({ MEDIA_ROOT: media, MAX_SESSIONS: '2', MAX_UPLOAD_MB: '0.001', LOG_LEVEL: 'warn' });
    try {
      const a = await start(srv, { video_path: 'short.mp4' });
      await start(srv, { video_path: 'short.mp4' });
      const r = await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'short.mp4' });
      assertError(r, 429, 'too_many_sessions', /MAX_SESSIONS/);
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
      assert.equal((await del(srv.base, `/api/v1/video/session/${a}`)).status, 200);
      await start(srv, { video_path: 'short.mp4' });
      // MAX_UPLOAD_MB: 413 before the video is stored.
      const form = new FormData();
      form.append('file', blob(await readFile(path.join(media, 'short.mp4')), 'video/mp4'), 'big.mp4');
      assertError(await postRaw(srv.base, '/api/v1/video/upload', form), 413, 'upload_too_large', /MAX_UPLOAD_MB/);
    } finally {
      await srv.close();
    }
  });

  it('with two devices, sessions go to the least-loaded one that gpu_ids allows', async () => {
    const srv = await startServer({ MEDIA_ROOT: media, DEVICES: 'cpu,cpu', ENGINE_THREADS: '1', LOG_LEVEL: 'warn' });
    try {
      const open = async (body: Record<string, unknown> = {}) => {
        const r = await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'short.mp4', ...body });
        assert.equal(r.status, 200, r.text);
        return r.body.device as string;
      };
      assert.equal(await open({ gpu_ids: [1] }), 'cpu#1');
      assert.equal(await open(), 'cpu#0', 'device 0 had no session');
      assert.equal(await open({ gpu_ids: [1] }), 'cpu#1', 'pinned to the allowed device even when it is busier');
      assert.equal(await open({ gpu_ids: [0, 1] }), 'cpu#0', 'the least-loaded of the allowed ones');
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'short.mp4', gpu_ids: [0, 2] }), 400, 'validation_error', /gpu_ids\[1\]: device index 2 is out of range; this server has 2 devices \(DEVICES, by index: 0: cpu, 1: cpu\)/);
      const text = await metrics(srv.base);
      assert.equal(metric(text, 'sam3_video_sessions_active', { device: 'cpu#0' }), 2);
      assert.equal(metric(text, 'sam3_video_sessions_active', { device: 'cpu#1' }), 2);
    } finally {
      await srv.close();
    }
  });

  it('an unused session expires after SESSION_IDLE_TIMEOUT_SECONDS; a used one is kept', async () => {
    let now = Date.now();
    const srv = await startServer({ MEDIA_ROOT: media, SESSION_IDLE_TIMEOUT_SECONDS: '60', LOG_LEVEL: 'warn' }, { now: () => now });
    try {
      const idle = await start(srv, { video_path: 'short.mp4' });
      const used = await start(srv, { video_path: 'short.mp4' });
      now += 45_000;
      assert.equal((await postJson(srv.base, `/api/v1/video/session/${used}/prompt`, { frame_index: 0, prompts: [boxPrompt()] })).status, 200);
      now += 20_000; // idle: 65 s unused; used: 20 s since its prompt
      srv.svc.sessions.sweep();
      const deadline = Date.now() + 5000;
      while (srv.svc.sessions.has(idle) && Date.now() < deadline) await sleep(10);
      assertError(await get(srv.base, `/api/v1/video/session/${idle}/status`), 404, 'session_not_found');
      assert.equal((await get(srv.base, `/api/v1/video/session/${used}/status`)).status, 200);
      assert.equal(metric(await metrics(srv.base), 'sam3_video_sessions_closed_total', { reason: 'expired' }), 1);
    } finally {
      await srv.close();
    }
  });

  it('the idle timer closes sessions by itself (tiny timeout)', async () => {
    const srv = await startServer({ MEDIA_ROOT: media, SESSION_IDLE_TIMEOUT_SECONDS: '0.3', LOG_LEVEL: 'warn' });
    try {
      const id = await start(srv, { video_path: 'short.mp4' });
      const deadline = Date.now() + 5000;
      while (srv.svc.sessions.has(id) && Date.now() < deadline) await sleep(50);
      assert.equal(srv.svc.sessions.has(id), false);
      assert.equal((await get(srv.base, '/health')).body.active_sessions, 0);
    } finally {
      await srv.close();
    }
  });

  it('shutdown closes every session and tells WebSocket clients', async () => {
    const long = path.join(media, 'long.mp4');
    await makeVideo(long, 60);
    const srv = await startServer({ MEDIA_ROOT: media, LOG_LEVEL: 'warn' });
    const id = await start(srv, { video_path: 'long.mp4' });
    await start(srv, { video_path: 'short.mp4' });
    await postJson(srv.base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: [boxPrompt()] });
    const c = new Client(wsUrl(srv, id));
    await c.opened;
    c.send({});
    assert.equal((await c.next()).type, 'frame');
    await srv.close();
    let m = await c.next();
    while (m.type === 'frame') m = await c.next();
    assert.equal(m.type, 'cancelled');
    const err = await c.next();
    assert.equal(err.code, 'shutting_down');
    assert.equal((await c.closed).code, 1001);
    assert.equal(srv.svc.sessions.size, 0);
    assert.equal(srv.svc.phase(), 'closed');
  });

  it('a bundle without the video tracker answers 501 naming what to serve', async () => {
    const fx = await fixture();
    const dir = await tempDir('sam3-no-tracker-');
    const manifest = JSON.parse(await readFile(path.join(fx.bundle, 'manifest.json'), 'utf8'));
    delete manifest.video;
    for (const name of Object.keys(manifest.files)) {
      if (/^(tracker_|memory_)/.test(name)) delete manifest.files[name];
      else await copyFile(path.join(fx.bundle, manifest.files[name].path), path.join(dir, manifest.files[name].path));
    }
    await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
    const srv = await startServer({ SAM3_CHECKPOINT: dir, MEDIA_ROOT: media, LOG_LEVEL: 'warn' });
    try {
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'short.mp4' }), 501, 'video_unsupported', /no video tracker/);
      assert.equal((await get(srv.base, '/models/info')).body.video.supported, false);
    } finally {
      await srv.close();
    }
  });

  it('video routes answer 503 while the model loads', async () => {
    const srv = await startServer({ MEDIA_ROOT: media, LOG_LEVEL: 'warn' }, { wait: false });
    try {
      assertError(await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'short.mp4' }), 503, 'model_loading');
      assertError(await get(srv.base, '/api/v1/video/session/x/status'), 404, 'session_not_found');
      await srv.svc.ready;
    } finally {
      await srv.close();
    }
  });
});
