/**
 * Uploaded videos: GET /api/v1/video/uploads (list), GET and DELETE /api/v1/video/uploads/{id},
 * 409 while a session is open on one, ids minted with REPLICA_ID (another replica's: 421), and
 * retention: an upload no session uses is deleted UPLOAD_TTL_SECONDS after its last use by the
 * periodic sweep, never while a session is open on it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { toolEnv, toolPath } from '../src/video/ffmpeg.js';
import { tempDir } from './helpers.js';
import { type Reply, type TestServer, blob, get, postJson, postRaw, startServer } from './server-helpers.js';

const W = 64;
const H = 48;

/** A short MPEG-4 video of a bright square moving over a grey background. */
async function makeVideo(file: string, frames: number): Promise<void> {
  const child = spawn(toolPath('ffmpeg'), ['-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${W}x${H}`, '-r', '10', '-i', '-', '-c:v', 'mpeg4', '-q:v', '3', '-pix_fmt', 'yuv420p', '-y', file], {
    env: toolEnv('ffmpeg'),
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  for (let t = 0; t < frames; t++) {
    const rgb = new Uint8Array(W * H * 3).fill(90);
    for (let y = 10; y < 30; y++) for (let x = 5 + 2 * t; x < 25 + 2 * t; x++) rgb.fill(230, (y * W + x) * 3, (y * W + x) * 3 + 3);
    child.stdin.write(rgb);
  }
  child.stdin.end();
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, `ffmpeg failed: ${stderr}`);
}

async function del(base: string, p: string): Promise<Reply> {
  const res = await fetch(base + p, { method: 'DELETE' });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: JSON.parse(text), text };
}

async function upload(srv: TestServer, video: Buffer, name = 'clip.mp4'): Promise<string> {
  const form = new FormData();
  form.append('file', blob(video, 'video/mp4'), name);
  const r = await postRaw(srv.base, '/api/v1/video/upload', form);
  assert.equal(r.status, 200, r.text);
  return r.body.video_id as string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('uploaded videos', () => {
  let video: Buffer;
  before(async () => {
    const dir = await tempDir('sam3-upload-src-');
    await makeVideo(path.join(dir, 'clip.mp4'), 6);
    video = await readFile(path.join(dir, 'clip.mp4'));
  });

  describe('listing, details and deletion (REPLICA_ID sam3-0, uploads kept for a day)', () => {
    let srv: TestServer;
    let media: string;
    before(async () => {
      media = await tempDir('sam3-uploads-');
      srv = await startServer({ MEDIA_ROOT: media, REPLICA_ID: 'sam3-0' });
    });
    after(async () => srv?.close());

    it('lists uploads with their size, times and use; GET one adds its video_info', async () => {
      const empty = await get(srv.base, '/api/v1/video/uploads');
      assert.equal(empty.status, 200, empty.text);
      assert.deepEqual(empty.body, { uploads: [], count: 0, ttl_seconds: 86400 });
      const a = await upload(srv, video);
      const b = await upload(srv, video, 'other.MP4');
      assert.match(a, /^sam3-0\.[0-9a-f-]{36}$/);
      const list = await get(srv.base, '/api/v1/video/uploads');
      assert.equal(list.body.count, 2);
      assert.deepEqual(list.body.uploads.map((u: any) => u.video_id).sort(), [a, b].sort());
      for (const u of list.body.uploads) {
        assert.equal(u.bytes, video.byteLength);
        assert.equal(u.in_use, false);
        assert.deepEqual(u.sessions, []);
        const expires = Date.parse(u.expires_at) - Date.parse(u.last_used_at);
        assert.equal(expires, 86_400_000, 'expires a TTL after its last use');
        assert.ok(Math.abs(Date.parse(u.created_at) - Date.now()) < 60_000);
      }
      const one = await get(srv.base, `/api/v1/video/uploads/${a}`);
      assert.equal(one.status, 200, one.text);
      assert.equal(one.body.video_id, a);
      assert.deepEqual(one.body.video_info, { total_frames: 6, fps: 10, resolution: { width: W, height: H }, duration_seconds: 0.6 });
      // The id without the replica prefix is this replica's too (as everywhere); upper case is the same id.
      const bare = a.slice('sam3-0.'.length);
      assert.equal((await get(srv.base, `/api/v1/video/uploads/${bare.toUpperCase()}`)).body.video_id, a);
    });

    it('DELETE is 409 while a session is open on the upload, then deletes it; the session start sees it gone', async () => {
      const id = await upload(srv, video);
      const s = await postJson(srv.base, '/api/v1/video/session/start', { video_id: id, session_id: 'on-upload' });
      assert.equal(s.status, 200, s.text);
      const used = await get(srv.base, `/api/v1/video/uploads/${id}`);
      assert.equal(used.body.in_use, true);
      assert.deepEqual(used.body.sessions, ['sam3-0.on-upload']);
      assert.equal(used.body.expires_at, null, 'no expiry while in use');
      const listed = (await get(srv.base, '/api/v1/video/sessions')).body.sessions.find((x: any) => x.session_id === 'sam3-0.on-upload');
      assert.equal(listed.video_id, id, 'the session names its upload by the canonical id');

      const busy = await del(srv.base, `/api/v1/video/uploads/${id}`);
      assert.equal(busy.status, 409, busy.text);
      assert.equal(busy.body.error.code, 'video_in_use');
      assert.deepEqual(busy.body.error.details, { video_id: id, sessions: ['sam3-0.on-upload'] });
      assert.match(busy.body.error.message, /session 'sam3-0\.on-upload' is open on it; close it first/);

      assert.equal((await del(srv.base, '/api/v1/video/session/sam3-0.on-upload')).status, 200);
      const gone = await del(srv.base, `/api/v1/video/uploads/${id}`);
      assert.equal(gone.status, 200, gone.text);
      assert.deepEqual(gone.body, { video_id: id, status: 'deleted' });
      assert.ok(!(await readdir(path.join(media, 'uploads'))).some((f) => id.endsWith(f.replace(/\.mp4$/, ''))), 'the file is gone');

      const again = await get(srv.base, `/api/v1/video/uploads/${id}`);
      assert.equal(again.status, 404, again.text);
      assert.equal(again.body.error.code, 'media_not_found');
      assert.equal((await del(srv.base, `/api/v1/video/uploads/${id}`)).status, 404);
      const start = await postJson(srv.base, '/api/v1/video/session/start', { video_id: id });
      assert.equal(start.status, 404, start.text);
      assert.match(start.body.error.message, /deleted, or expired after UPLOAD_TTL_SECONDS/);
    });

    it("another replica's id is 421 naming the owner; a malformed id 400", async () => {
      const id = await upload(srv, video);
      const foreign = id.replace(/^sam3-0\./, 'sam3-1.');
      for (const r of [await get(srv.base, `/api/v1/video/uploads/${foreign}`), await del(srv.base, `/api/v1/video/uploads/${foreign}`)]) {
        assert.equal(r.status, 421, r.text);
        assert.equal(r.body.error.code, 'wrong_replica');
        assert.equal(r.headers.get('x-sam3-owner'), 'sam3-1');
      }
      const bad = await get(srv.base, '/api/v1/video/uploads/not-a-video-id');
      assert.equal(bad.status, 400, bad.text);
      assert.match(bad.body.error.message, /is not a video id/);
      assert.equal((await get(srv.base, `/api/v1/video/uploads/${id}`)).status, 200, 'the upload itself is untouched');
    });
  });

  describe('retention (UPLOAD_TTL_SECONDS=1)', () => {
    let srv: TestServer;
    let media: string;
    before(async () => {
      media = await tempDir('sam3-uploads-ttl-');
      srv = await startServer({ MEDIA_ROOT: media, UPLOAD_TTL_SECONDS: '1' });
    });
    after(async () => srv?.close());

    const fileOf = async (id: string) => path.join(media, 'uploads', (await readdir(path.join(media, 'uploads'))).find((f) => f.startsWith(id))!);

    it('deletes an unused upload after the TTL, keeps one a session is open on, and deletes it a TTL after the session closed', async () => {
      const unused = await upload(srv, video);
      const kept = await upload(srv, video);
      const unusedFile = await fileOf(unused);
      const keptFile = await fileOf(kept);
      const s = await postJson(srv.base, '/api/v1/video/session/start', { video_id: kept, session_id: 'keeper' });
      assert.equal(s.status, 200, s.text);
      // The sweep runs every 250 ms with a 1 s TTL; give it time under load.
      const deadline = Date.now() + 30_000;
      while (existsSync(unusedFile) && Date.now() < deadline) await sleep(100);
      assert.ok(!existsSync(unusedFile), 'the unused upload was deleted');
      assert.ok(srv.logs.some((l) => l.msg === 'upload expired (UPLOAD_TTL_SECONDS) and was deleted' && l.video_id === unused));
      await sleep(2000); // two TTLs with the session open
      assert.ok(existsSync(keptFile), 'an upload in use is never deleted');
      const listed = (await get(srv.base, '/api/v1/video/uploads')).body;
      assert.deepEqual(
        listed.uploads.map((u: any) => [u.video_id, u.in_use]),
        [[kept, true]],
      );
      // The session still works on it.
      const p = await postJson(srv.base, '/api/v1/video/session/keeper/prompt', { frame_index: 0, prompts: [{ type: 'box', box: [5 / W, 10 / H, 20 / W, 20 / H] }] });
      assert.equal(p.status, 200, p.text);

      const closedAt = Date.now();
      assert.equal((await del(srv.base, '/api/v1/video/session/keeper')).status, 200);
      while (existsSync(keptFile) && Date.now() < closedAt + 30_000) await sleep(100);
      assert.ok(!existsSync(keptFile), 'deleted once unused for the TTL');
      assert.ok(Date.now() - closedAt >= 700, `not before a TTL after the last use (the sweep marks it used every 250 ms) (${Date.now() - closedAt} ms)`);
      assert.deepEqual((await get(srv.base, '/api/v1/video/uploads')).body.uploads, []);
    });
  });
});
