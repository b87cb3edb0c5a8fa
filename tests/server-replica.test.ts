/**
 * Replica-owned ids in one server (REPLICA_ID=sam3-0): the ids it makes carry its name, its own ids
 * work with or without the name, and another replica's ids get 421 wrong_replica naming the owner
 * on every kind of endpoint (image_id in a body, a session in the path, the WebSocket, video_id),
 * without being looked up. tests/scaleout.test.ts runs three replicas behind nginx.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import WebSocket from 'ws';

import { ConfigError, loadConfig } from '../src/server/core/config.js';
import { jpegImage, pngImage, tempDir } from './helpers.js';
import { type Reply, type TestServer, get, postJson, startServer } from './server-helpers.js';

const text = (t: string) => ({ type: 'text', text: t });

function assertWrongReplica(r: Reply, owner: string): void {
  assert.equal(r.status, 421, r.text);
  assert.equal(r.body.error.code, 'wrong_replica');
  assert.equal(r.body.error.details.owner, owner);
  assert.equal(r.body.error.details.replica, 'sam3-0');
  assert.equal(r.headers.get('x-sam3-owner'), owner);
  assert.match(r.body.error.message, new RegExp(`belongs to replica '${owner}' and this is replica 'sam3-0'`));
}

describe('replica-owned ids (REPLICA_ID=sam3-0)', () => {
  let srv: TestServer;
  before(async () => {
    const media = await tempDir('sam3-replica-media-');
    await mkdir(path.join(media, 'clip'));
    for (let i = 0; i < 3; i++) await writeFile(path.join(media, 'clip', `${i}.jpg`), await jpegImage(48, 32, i));
    srv = await startServer({ REPLICA_ID: 'sam3-0', MEDIA_ROOT: media });
  });
  after(() => srv.close());

  it('REPLICA_ID must be a DNS label', () => {
    assert.throws(() => loadConfig({ REPLICA_ID: 'Sam3_0' }, { envFile: false }), (e: Error) => e instanceof ConfigError && /REPLICA_ID="Sam3_0": must be a DNS label/.test(e.message));
    assert.equal(loadConfig({ REPLICA_ID: 'sam3-12' }, { envFile: false }).replica, 'sam3-12');
    assert.equal(loadConfig({}, { envFile: false }).replica, undefined);
  });

  it('names itself in every response (X-Sam3-Replica; /health keeps the spec fields)', async () => {
    const h = await get(srv.base, '/health');
    assert.equal(h.headers.get('x-sam3-replica'), 'sam3-0');
    assert.equal(h.body.replica, undefined);
  });

  it('image_ids carry the replica; its own work with and without the prefix; another replica gets 421', async () => {
    const png = await pngImage(40, 32, 11);
    const e = await postJson(srv.base, '/api/v1/image/embed', { image: png.toString('base64') });
    assert.equal(e.status, 200, e.text);
    assert.match(e.body.image_id, /^sam3-0\.[0-9a-f]{64}$/);
    const sha = (e.body.image_id as string).slice('sam3-0.'.length);
    for (const id of [e.body.image_id, sha]) {
      const r = await postJson(srv.base, '/api/v1/image/segment', { image_id: id, prompts: [text('cat')] });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.body.image_id, e.body.image_id);
      assert.equal(r.body.cache_hit, true);
    }
    // The same bytes are cached here, yet sam3-1's id for them is refused, not looked up.
    assertWrongReplica(await postJson(srv.base, '/api/v1/image/segment', { image_id: `sam3-1.${sha}`, prompts: [text('cat')] }), 'sam3-1');
    assertWrongReplica(await postJson(srv.base, '/api/v1/image/cached-features', { image_id: `sam3-1.${sha}`, text_prompts: ['cat'] }), 'sam3-1');
    const batch = await postJson(srv.base, '/api/v1/image/batch', { images: [{ image_id: e.body.image_id, prompts: [text('cat')] }, { image_id: `sam3-2.${sha}`, prompts: [text('cat')] }] });
    assert.equal(batch.status, 400, batch.text);
    assert.match(batch.body.error.message, /images\[0\]\.image_id belongs to replica 'sam3-0' and images\[1\]\.image_id to replica 'sam3-2'/);
    const one = await postJson(srv.base, '/api/v1/image/batch', { images: [{ image_id: `sam3-2.${sha}`, prompts: [text('cat')] }] });
    assertWrongReplica(one, 'sam3-2');
    assert.match(one.body.error.message, /^images\[0\]\.image_id 'sam3-2\./);
    const bad = await postJson(srv.base, '/api/v1/image/segment', { image_id: `Sam3.${sha}`, prompts: [text('cat')] });
    assert.equal(bad.status, 400, bad.text);
  });

  it('session ids carry the replica (a chosen one too); another replica gets 421 on REST and the WebSocket', async () => {
    const mine = await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clip', session_id: 'mine' });
    assert.equal(mine.status, 200, mine.text);
    assert.equal(mine.body.session_id, 'sam3-0.mine');
    const fresh = await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clip' });
    assert.match(fresh.body.session_id, /^sam3-0\.[0-9a-f-]{36}$/);
    assert.equal((await get(srv.base, '/api/v1/video/session/sam3-0.mine/status')).status, 200);
    const dotted = await postJson(srv.base, '/api/v1/video/session/start', { video_path: 'clip', session_id: 'sam3-1.x' });
    assert.equal(dotted.status, 400, 'a chosen id cannot name a replica');
    const other = await get(srv.base, '/api/v1/video/session/sam3-4.abc/status');
    assertWrongReplica(other, 'sam3-4');
    const del = await fetch(`${srv.base}/api/v1/video/session/sam3-4.abc`, { method: 'DELETE' });
    assert.equal(del.status, 421);
    const own = await get(srv.base, '/api/v1/video/session/sam3-0.abc/status');
    assert.equal(own.status, 404, own.text);
    assert.match(own.body.error.message, /lost when the server restarted/);
    const start = await postJson(srv.base, '/api/v1/video/session/start', { video_id: 'sam3-7.2b1e8c55-3f0b-4e8e-9d0a-0f3c1e2d4b5a' });
    assertWrongReplica(start, 'sam3-7');
    const closed = await new Promise<{ code: number; error: { type: string; code: string; message: string } }>((resolve, reject) => {
      const ws = new WebSocket(`${srv.base.replace('http', 'ws')}/api/v1/video/ws/propagate/sam3-4.abc`);
      let error: any;
      ws.on('message', (d) => (error = JSON.parse(d.toString())));
      ws.on('close', (code) => resolve({ code, error }));
      ws.on('error', reject);
    });
    assert.equal(closed.code, 4421);
    assert.equal(closed.error.type, 'error');
    assert.equal(closed.error.code, 'wrong_replica');
    assert.match(closed.error.message, /belongs to replica 'sam3-4'/);
  });
});
