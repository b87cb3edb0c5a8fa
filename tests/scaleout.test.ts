/**
 * Scale-out: three replicas (REPLICA_ID sam3-0..2, `npm start`'s entry, the tiny fixture bundle)
 * behind nginx configured with deploy/nginx's routing files, all on 127.0.0.1. Through nginx: 20
 * images embedded and prompted by image_id (an id in a JSON body: the first replica answers 421 and
 * nginx follows it to the owner), an upload started by video_id the same way, and 20 video sessions
 * (ids in the path) prompted and propagated over REST and WebSocket. One replica is killed while
 * WebSocket propagations run: its sessions and images get 410 replica_gone from nginx, the other
 * replicas' sessions finish every frame and keep working, new sessions land on live replicas, and
 * when those are full the 429 with Retry-After comes through. Reports how requests spread.
 *
 * Needs nginx on PATH (Debian: apt-get install nginx). Without it the test is skipped, unless
 * SAM3_REQUIRE_DEPLOY_TOOLS=1 (CI sets it), when it fails.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';

import WebSocket from 'ws';

import { toolEnv, toolPath } from '../src/video/ffmpeg.js';
import { fixture, pngImage, root, tempDir } from './helpers.js';
import { type Reply, get, postJson, postRaw } from './server-helpers.js';

const REPLICAS = ['sam3-0', 'sam3-1', 'sam3-2'];
const VICTIM = 'sam3-1';
const MAX_SESSIONS = 8;
const N = 20;
const W = 64;
const H = 48;
const FRAMES = 6;

const hasNginx = spawnSync('nginx', ['-v']).status === 0;
const required = process.env.SAM3_REQUIRE_DEPLOY_TOOLS === '1';
const skip = !hasNginx && !required ? 'nginx is not installed (apt-get install nginx); SAM3_REQUIRE_DEPLOY_TOOLS=1 makes this a failure' : false;

interface Replica {
  name: string;
  port: number;
  child: ChildProcess;
  exited: Promise<number | null>;
}

const ownerOf = (id: string) => id.slice(0, id.indexOf('.'));
const b64 = (b: Buffer) => b.toString('base64');

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Frame t of a small clip: a square moving right on a textured background. */
function frame(t: number): Uint8Array {
  const rgb = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      const inside = x >= 10 + 4 * t && x < 26 + 4 * t && y >= 14 && y < 30;
      rgb[i] = inside ? 220 : 30 + ((x * 7 + y * 3) % 40);
      rgb[i + 1] = inside ? 60 : 50;
      rgb[i + 2] = inside ? 40 : 90;
    }
  }
  return rgb;
}

async function makeVideo(file: string): Promise<void> {
  const child = spawn(toolPath('ffmpeg'), ['-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${W}x${H}`, '-r', '10', '-i', '-', '-c:v', 'mpeg4', '-q:v', '3', '-pix_fmt', 'yuv420p', '-y', file], {
    env: toolEnv('ffmpeg'),
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  for (let t = 0; t < FRAMES; t++) child.stdin!.write(frame(t));
  child.stdin!.end();
  assert.equal(await new Promise((r) => child.on('close', r)), 0, 'ffmpeg made the test clip');
}

async function startReplica(name: string, bundle: string, mediaRoot: string): Promise<Replica> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'server', 'main.ts')], {
    cwd: root,
    env: {
      ...process.env,
      REPLICA_ID: name,
      SAM3_CHECKPOINT: bundle,
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: '0',
      MEDIA_ROOT: mediaRoot,
      MAX_SESSIONS: String(MAX_SESSIONS),
      ENGINE_THREADS: '1',
      IMAGE_MODEL_WARMUP: 'false',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line) as { msg?: string; port?: number };
      if (entry.msg?.startsWith('listening') && entry.port) resolve(entry.port);
    });
    void exited.then((code) => reject(new Error(`replica ${name} exited ${code} before listening`)));
  });
  return { name, port, child, exited };
}

/** The deployment part of the nginx config (deploy/nginx/compose.conf's shape), over local ports. */
function nginxConf(dir: string, port: number, replicas: Replica[]): string {
  const servers = replicas.map((r) => `    server 127.0.0.1:${r.port} max_fails=0;`).join('\n');
  const targets = replicas.map((r) => `    ${r.name} 127.0.0.1:${r.port};`).join('\n');
  return `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 512; }
http {
    log_format sam3 '$request_method $uri $status $upstream_addr';
    access_log ${dir}/access.log sam3;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    include ${root}/deploy/nginx/sam3-maps.conf;
    upstream sam3_any {
        least_conn;
${servers}
        keepalive 16;
    }
    map $sam3_owner $sam3_target {
        "" sam3_any;
${targets}
        default "";
    }
    map $sam3_follow $sam3_follow_target {
${targets}
        default "";
    }
    server {
        listen 127.0.0.1:${port};
        include ${root}/deploy/nginx/sam3-locations.conf;
    }
}
`;
}

/** Opens a propagation WebSocket and collects its messages until it closes. */
function wsPropagate(url: string): { opened: Promise<void>; done: Promise<{ frames: number[]; complete: boolean; code: number; error?: string }>; firstFrame: Promise<void> } {
  const ws = new WebSocket(url);
  const frames: number[] = [];
  let complete = false;
  let error: string | undefined;
  let onFirst!: () => void;
  const firstFrame = new Promise<void>((r) => (onFirst = r));
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => {
      ws.send(JSON.stringify({ direction: 'forward', start_frame_index: 0 }));
      resolve();
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode, body })));
    });
    ws.once('error', reject);
  });
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { type: string; frame_index?: number; code?: string };
    if (m.type === 'frame') {
      frames.push(m.frame_index!);
      onFirst();
    } else if (m.type === 'complete') {
      complete = true;
      ws.close(1000);
    } else if (m.type === 'error') error = m.code;
  });
  const done = new Promise<{ frames: number[]; complete: boolean; code: number; error?: string }>((resolve) => {
    ws.on('close', (code) => resolve({ frames, complete, code, ...(error ? { error } : {}) }));
    ws.on('error', () => undefined);
  });
  return { opened, done, firstFrame };
}

describe('three replicas behind nginx', { skip }, () => {
  let dir: string;
  let base: string;
  let replicas: Replica[] = [];
  let nginx: ChildProcess | undefined;
  const images: { id: string; png: Buffer }[] = [];
  const sessions: string[] = [];

  before(async () => {
    dir = await tempDir('sam3-scaleout-');
    const bundle = (await fixture()).bundle;
    replicas = await Promise.all(
      REPLICAS.map(async (name) => {
        const media = path.join(dir, `media-${name}`);
        await mkdir(media, { recursive: true });
        await makeVideo(path.join(media, 'clip.mp4'));
        return startReplica(name, bundle, media);
      }),
    );
    for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(path.join(dir, sub), { recursive: true });
    await chmod(dir, 0o777); // nginx's workers may run as another user
    const port = await freePort();
    await writeFile(path.join(dir, 'nginx.conf'), nginxConf(dir, port, replicas));
    const check = spawnSync('nginx', ['-t', '-p', dir, '-c', path.join(dir, 'nginx.conf')], { encoding: 'utf8' });
    assert.equal(check.status, 0, `nginx -t: ${check.stderr}`);
    nginx = spawn('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'inherit'] });
    base = `http://127.0.0.1:${port}`;
    for (const r of replicas) {
      while ((await get(`http://127.0.0.1:${r.port}`, '/health')).status !== 200) await new Promise((res) => setTimeout(res, 100));
    }
    for (let i = 0; i < 50; i++) {
      try {
        if ((await get(base, '/health')).status === 200) break;
      } catch {
        // nginx is still starting
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  });

  after(async () => {
    nginx?.kill('SIGQUIT');
    for (const r of replicas) r.child.kill('SIGKILL');
    await Promise.all(replicas.map((r) => r.exited));
  });

  it('embeds 20 images on the replicas and prompts each by image_id through nginx (421 followed to the owner)', async () => {
    for (let i = 0; i < N; i++) {
      const png = await pngImage(40, 32, 100 + i);
      const r = await postJson(base, '/api/v1/image/embed', { image: b64(png) });
      assert.equal(r.status, 200, r.text);
      assert.match(r.body.image_id, /^sam3-[0-2]\.[0-9a-f]{64}$/);
      assert.equal(ownerOf(r.body.image_id), r.headers.get('x-sam3-replica'), 'the id names the replica that made it');
      images.push({ id: r.body.image_id, png });
    }
    const spread = new Set(images.map((im) => ownerOf(im.id)));
    assert.equal(spread.size, 3, `images on every replica: ${[...spread]}`);
    for (const im of images) {
      const r = await postJson(base, '/api/v1/image/segment', { image_id: im.id, prompts: [{ type: 'text', text: 'cat' }], confidence_threshold: 0 });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-sam3-replica'), ownerOf(im.id), 'answered by the owner');
      assert.equal(r.body.cache_hit, true);
      assert.equal(r.body.image_id, im.id);
    }
    // Straight to a replica that is not the owner: 421 naming the owner, never a lookup.
    const foreign = images.find((im) => ownerOf(im.id) !== 'sam3-0')!;
    const direct = await postJson(`http://127.0.0.1:${replicas[0]!.port}`, '/api/v1/image/segment', { image_id: foreign.id, prompts: [{ type: 'text', text: 'cat' }] });
    assert.equal(direct.status, 421, direct.text);
    assert.equal(direct.body.error.code, 'wrong_replica');
    assert.equal(direct.headers.get('x-sam3-owner'), ownerOf(foreign.id));
    // A batch naming two replicas' images cannot go to one replica.
    const two = [images.find((im) => ownerOf(im.id) === 'sam3-0')!, images.find((im) => ownerOf(im.id) === 'sam3-2')!];
    const batch = await postJson(base, '/api/v1/image/batch', { images: two.map((im) => ({ image_id: im.id, prompts: [{ type: 'text', text: 'cat' }] })) });
    assert.equal(batch.status, 400, batch.text);
    assert.match(batch.body.error.message, /one batch can name the image_ids of one replica only/);
  });

  it('starts a session on an upload by video_id through nginx (the upload lives on one replica)', async () => {
    const form = new FormData();
    form.append('file', new Blob([await readFile(path.join(dir, 'media-sam3-0', 'clip.mp4'))]), 'clip.mp4');
    const up = await postRaw(base, '/api/v1/video/upload', form);
    assert.equal(up.status, 200, up.text);
    const owner = ownerOf(up.body.video_id);
    assert.ok(REPLICAS.includes(owner), up.body.video_id);
    const s = await postJson(base, '/api/v1/video/session/start', { video_id: up.body.video_id });
    assert.equal(s.status, 200, s.text);
    assert.equal(ownerOf(s.body.session_id), owner, 'the session opened where the upload is');
    // The uploads API routes by the id in the path: always the owner, without a 421.
    const info = await fetch(`${base}/api/v1/video/uploads/${up.body.video_id}`);
    assert.equal(info.status, 200);
    assert.equal(info.headers.get('x-sam3-replica'), owner);
    assert.deepEqual(((await info.json()) as { sessions: string[] }).sessions, [s.body.session_id]);
    const busy = await fetch(`${base}/api/v1/video/uploads/${up.body.video_id}`, { method: 'DELETE' });
    assert.equal(busy.status, 409, 'in use by the session');
    assert.equal((await fetch(`${base}/api/v1/video/session/${s.body.session_id}`, { method: 'DELETE' })).status, 200);
    const deleted = await fetch(`${base}/api/v1/video/uploads/${up.body.video_id}`, { method: 'DELETE' });
    assert.equal(deleted.status, 200);
    assert.equal(deleted.headers.get('x-sam3-replica'), owner);
  });

  it('runs 20 sessions over the replicas, kills one during WebSocket propagation, and the others lose nothing', async (t) => {
    for (let i = 0; i < N; i++) {
      const r = await postJson(base, '/api/v1/video/session/start', { video_path: 'clip.mp4' });
      assert.equal(r.status, 200, r.text);
      assert.equal(ownerOf(r.body.session_id), r.headers.get('x-sam3-replica'));
      sessions.push(r.body.session_id);
    }
    const spread = Object.fromEntries(REPLICAS.map((n) => [n, sessions.filter((s) => ownerOf(s) === n).length]));
    t.diagnostic(`sessions per replica: ${JSON.stringify(spread)}; images per replica: ${JSON.stringify(Object.fromEntries(REPLICAS.map((n) => [n, images.filter((im) => ownerOf(im.id) === n).length])))}`);
    assert.ok(Object.values(spread).every((n) => n >= 4), `sessions spread over the replicas: ${JSON.stringify(spread)}`);
    for (const [i, id] of sessions.entries()) {
      const p = await postJson(base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: [{ type: 'box', box: [10 / W, 14 / H, 16 / W, 16 / H] }] });
      assert.equal(p.status, 200, p.text);
      assert.equal(p.headers.get('x-sam3-replica'), ownerOf(id));
      if (i % 2 === 0) {
        const r = await postJson(base, `/api/v1/video/session/${id}/propagate`, { direction: 'forward' });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.body.frames_processed, FRAMES, 'REST propagation tracked every frame');
      }
    }

    // WebSocket propagations on every session at once; the victim dies once one of its frames came.
    const ws = sessions.map((id) => ({ id, run: wsPropagate(`${base.replace('http', 'ws')}/api/v1/video/ws/propagate/${id}`) }));
    await Promise.all(ws.map((w) => w.run.opened));
    await ws.find((w) => ownerOf(w.id) === VICTIM)!.run.firstFrame;
    const victim = replicas.find((r) => r.name === VICTIM)!;
    victim.child.kill('SIGKILL');
    await victim.exited;
    const results = await Promise.all(ws.map(async (w) => ({ id: w.id, ...(await w.run.done) })));
    const cut = results.filter((r) => ownerOf(r.id) === VICTIM && !r.complete);
    assert.ok(cut.length > 0, "the kill cut the killed replica's propagations short");
    for (const r of cut) assert.ok(r.frames.length < FRAMES && r.code !== 1000, `${r.id}: ended without completing: ${JSON.stringify(r)}`);
    for (const r of results) {
      if (ownerOf(r.id) !== VICTIM) {
        assert.equal(r.complete, true, `${r.id}: ${JSON.stringify(r)}`);
        assert.deepEqual(r.frames, Array.from({ length: FRAMES }, (_, f) => f), `${r.id}: every frame, in order`);
      }
    }

    // After the kill: the victim's ids get a clear 410 from nginx; the others work as before.
    for (const id of sessions) {
      const st = await get(base, `/api/v1/video/session/${id}/status`);
      if (ownerOf(id) === VICTIM) {
        assert.equal(st.status, 410, st.text);
        assert.equal(st.body.error.code, 'replica_gone');
        assert.equal(st.body.error.details.owner, VICTIM);
      } else {
        assert.equal(st.status, 200, st.text);
        assert.equal(st.body.frames_tracked, FRAMES, `${id}: nothing lost`);
        const again = await postJson(base, `/api/v1/video/session/${id}/propagate`, { direction: 'forward' });
        assert.equal(again.status, 200, again.text);
      }
    }
    const gone = sessions.find((id) => ownerOf(id) === VICTIM)!;
    const wsGone = wsPropagate(`${base.replace('http', 'ws')}/api/v1/video/ws/propagate/${gone}`);
    await assert.rejects(wsGone.opened, (err: { status?: number; body?: string }) => err.status === 410 && /replica_gone/.test(err.body ?? ''));
    for (const im of images) {
      const r = await postJson(base, '/api/v1/image/segment', { image_id: im.id, prompts: [{ type: 'text', text: 'cat' }] });
      if (ownerOf(im.id) === VICTIM) {
        assert.equal(r.status, 410, r.text);
        assert.equal(r.body.error.code, 'replica_gone');
      } else assert.equal(r.status, 200, r.text);
    }

    // New sessions go to the live replicas until they are full; then the 429 and its Retry-After come through.
    let refused: Reply | undefined;
    for (let i = 0; i < 2 * MAX_SESSIONS && !refused; i++) {
      const r = await postJson(base, '/api/v1/video/session/start', { video_path: 'clip.mp4' });
      if (r.status === 429) refused = r;
      else {
        assert.equal(r.status, 200, `${r.text}\nnginx: ${await readFile(path.join(dir, 'error.log'), 'utf8')}`);
        assert.notEqual(ownerOf(r.body.session_id), VICTIM);
      }
    }
    assert.ok(refused, 'the live replicas filled up');
    assert.equal(refused.body.error.code, 'too_many_sessions');
    assert.ok(Number(refused.headers.get('retry-after')) >= 1, 'Retry-After passed through');

    const log = (await readFile(path.join(dir, 'access.log'), 'utf8')).trim().split('\n');
    const byUpstream: Record<string, number> = {};
    for (const line of log) {
      const upstream = line.split(' ').slice(3).join(' ');
      byUpstream[upstream] = (byUpstream[upstream] ?? 0) + 1;
    }
    const names = Object.fromEntries(replicas.map((r) => [`127.0.0.1:${r.port}`, r.name]));
    t.diagnostic(`nginx requests by upstream (a 421 follow lists two): ${JSON.stringify(Object.fromEntries(Object.entries(byUpstream).map(([k, v]) => [k.replace(/127\.0\.0\.1:\d+/g, (a) => names[a] ?? a), v])))}`);
  });
});
