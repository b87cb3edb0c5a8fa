/**
 * The process lifecycle as Docker, systemd and Kubernetes drive it: SIGTERM to `npm start` reaches
 * node and runs the graceful shutdown (nothing left behind), Ctrl-C on a terminal (SIGINT to the
 * whole group) likewise, a taken port fails at once, and the drain: /health/ready flips first, the
 * server serves on for SHUTDOWN_DELAY_MS, then answers new requests 503 + Connection: close (not a
 * refused connection) while the request in flight finishes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';

import { createApp } from '../src/server/core/app.js';
import { runtimeInfo } from '../src/index.js';
import { loadConfig } from '../src/server/core/config.js';
import { fixture, pngImage } from './helpers.js';
import { alive, ensureDist, spawnServer } from './server-process.js';
import { type TestServer, b64, get, startServer } from './server-helpers.js';

const text = (t: string) => ({ type: 'text', text: t });

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: any;
}

/** One request on a connection of its own (no pool), so a closed keep-alive socket cannot interfere. */
function request(base: string, method: string, path: string, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(base + path, { method, agent: false, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, body: (res.headers['content-type'] ?? '').includes('json') ? JSON.parse(raw) : raw });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** The pids whose parent is `pid`. */
function children(pid: number): { pid: number; comm: string }[] {
  const r = spawnSync('ps', ['-o', 'pid=,comm=', '--ppid', String(pid)], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      const [p, comm] = l.trim().split(/\s+/);
      return { pid: Number(p), comm: comm ?? '' };
    });
}

/** The promise's value, or a failure naming `what` after timeoutMs. */
function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('npm start under a supervisor', () => {
  before(() => ensureDist());

  it('SIGTERM to the npm process reaches node: graceful shutdown runs, npm exits 0, nothing is left', async () => {
    const srv = await spawnServer({}, { npm: true, detached: true });
    const npmPid = srv.child.pid!;
    try {
      const base = `http://127.0.0.1:${await srv.port}`;
      await until(async () => (await request(base, 'GET', '/health/ready')).status === 200, 120_000, 'readiness');
      // npm runs the script through `sh -c`; `exec` makes node npm's own child, so npm's
      // forwarded SIGTERM reaches it (dash would otherwise die and leave node serving).
      const kids = children(npmPid);
      assert.deepEqual(kids.map((k) => k.comm), ['node'], `npm's children: ${JSON.stringify(kids)}`);
      const nodePid = kids[0]!.pid;
      process.kill(npmPid, 'SIGTERM');
      // 'exited' waits for stdout to close too: a node left running would hold it open.
      assert.equal(await within(srv.exited, 60_000, 'npm and node to exit'), 0, srv.stderr());
      const msgs = srv.logs.map((l) => l.msg);
      assert.ok(msgs.some((m) => m.startsWith('signal received')), msgs.join(' | '));
      assert.ok(msgs.includes('shut down'), msgs.join(' | '));
      await until(() => !alive(nodePid), 10_000, 'node to exit');
      assert.equal(alive(-npmPid), false, 'no process is left in the group');
      await assert.rejects(request(base, 'GET', '/health/live'), /ECONNREFUSED/);
    } finally {
      if (alive(-npmPid)) process.kill(-npmPid, 'SIGKILL');
    }
  });

  it("Ctrl-C on a terminal (SIGINT to the group, and npm's forwarded copy) is one graceful shutdown", async () => {
    const srv = await spawnServer({}, { npm: true, detached: true });
    const group = srv.child.pid!;
    try {
      const base = `http://127.0.0.1:${await srv.port}`;
      await until(async () => (await request(base, 'GET', '/health/ready')).status === 200, 120_000, 'readiness');
      process.kill(-group, 'SIGINT');
      const code = await within(srv.exited, 60_000, 'npm and node to exit');
      const msgs = srv.logs.map((l) => l.msg);
      assert.ok(msgs.includes('shut down'), `graceful shutdown ran: ${msgs.join(' | ')}`);
      assert.ok(!msgs.includes('second signal: exiting now'), msgs.join(' | '));
      assert.equal(code, 0, srv.stderr());
      await until(() => !alive(-group), 10_000, 'the group to empty');
    } finally {
      if (alive(-group)) process.kill(-group, 'SIGKILL');
    }
  });
});

describe('a port already in use', () => {
  let blocker: net.Server;
  let port: number;
  before(async () => {
    blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    port = (blocker.address() as net.AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => blocker.close(() => resolve())));

  it('exits 1 at once with one fatal line naming the port, before any model work', async () => {
    const srv = await spawnServer({ SERVER_PORT: String(port) });
    const code = await srv.exited;
    assert.equal(code, 1, srv.stderr());
    const fatal = srv.logs.filter((l) => l.level >= 50);
    assert.equal(fatal.length, 1, JSON.stringify(srv.logs));
    assert.equal(fatal[0]!.level, 60);
    assert.match(fatal[0]!.msg, new RegExp(`port ${port} is already in use`));
    assert.equal(fatal[0]!.port, port);
    const msgs = srv.logs.map((l) => l.msg);
    assert.ok(!msgs.some((m) => /^loading model|^ready$|uncaught/.test(m)), msgs.join(' | '));
    assert.equal(srv.stderr(), '');
  });
});

describe('a device this machine lacks', { skip: runtimeInfo().cudaAvailable ? 'this machine has a CUDA device' : false }, () => {
  it('exits 1 with one fatal line that says where the device is set', async () => {
    const srv = await spawnServer({ IMAGE_MODEL_DEVICE: 'cuda' });
    assert.equal(await srv.exited, 1, srv.stderr());
    const fatal = srv.logs.filter((l) => l.level >= 50);
    assert.equal(fatal.length, 1, JSON.stringify(srv.logs));
    assert.equal(fatal[0]!.code, 'ERR_SAM3_DEVICE_MISMATCH');
    assert.match(fatal[0]!.msg, /CUDA is not available.*set IMAGE_MODEL_DEVICE \(or DEVICES\).*--gpus/);
  });
});

describe('readiness and liveness', () => {
  it('/health/ready is 503 "loading" until the model is loaded; /health/live is 200 throughout', async () => {
    const bundle = (await fixture()).bundle;
    const config = loadConfig({ SAM3_CHECKPOINT: bundle, IMAGE_MODEL_WARMUP: 'false', ENGINE_THREADS: '2', LOG_LEVEL: 'silent' }, { envFile: false });
    // autoLoad false holds the phase at 'loading' until load(): no race with a fast tiny model.
    const svc = createApp({ config, autoLoad: false, defaultMetrics: false });
    const server = await svc.listen(0, '127.0.0.1');
    const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    try {
      const loading = await request(base, 'GET', '/health/ready');
      assert.equal(loading.status, 503);
      assert.deepEqual(loading.body, { status: 'loading' });
      assert.ok(loading.headers['retry-after']);
      const live = await request(base, 'GET', '/health/live');
      assert.equal(live.status, 200);
      assert.equal(live.body.status, 'alive');
      assert.equal((await request(base, 'GET', '/health')).body.status, 'loading');
      await svc.load();
      const ready = await request(base, 'GET', '/health/ready');
      assert.equal(ready.status, 200);
      assert.deepEqual(ready.body, { status: 'ready' });
    } finally {
      await svc.close();
    }
  });
});

describe('draining on shutdown', () => {
  let srv: TestServer;
  const DELAY = 4000;
  before(async () => {
    srv = await startServer({ SHUTDOWN_DELAY_MS: String(DELAY) });
  });
  after(async () => srv?.close());

  it('readiness flips first, requests are served for SHUTDOWN_DELAY_MS, then new ones get 503 + Connection: close while the one in flight finishes', async () => {
    const image = b64(await pngImage(40, 40, 11));
    assert.equal((await request(srv.base, 'GET', '/health/ready')).status, 200);

    // A request in flight: its body arrives slowly, so it is still running when the drain starts.
    const body = Buffer.from(JSON.stringify({ image, prompts: [text('person')] }));
    let slowAnswer!: Promise<Answer>;
    const slow = http.request(`${srv.base}/api/v1/image/segment`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': body.length } });
    slowAnswer = new Promise((resolve, reject) => {
      slow.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
      });
      slow.on('error', reject);
    });
    slow.write(body.subarray(0, 10));
    await until(() => srv.svc.inflight() === 1, 10_000, 'the slow request to be in flight');

    const started = Date.now();
    const closing = srv.svc.close();

    // 1. Readiness is withdrawn at once; liveness is not.
    const ready = await request(srv.base, 'GET', '/health/ready');
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.body, { status: 'shutting_down' });
    assert.equal((await request(srv.base, 'GET', '/health')).body.status, 'shutting_down');
    assert.equal((await request(srv.base, 'GET', '/health/live')).status, 200);

    // 2. Within the delay, new requests are still served.
    const during = await request(srv.base, 'POST', '/api/v1/image/segment', { image, prompts: [text('car')] });
    assert.equal(during.status, 200, JSON.stringify(during.body));
    assert.equal(srv.svc.phase(), 'ready', 'still within SHUTDOWN_DELAY_MS');

    // 3. After it, new requests get a JSON 503 and Connection: close, not a refused connection.
    await until(() => srv.svc.phase() === 'shutting_down', DELAY + 10_000, 'the delay to pass');
    assert.ok(Date.now() - started >= DELAY - 50, `the delay was honoured (${Date.now() - started} ms)`);
    const refused = await request(srv.base, 'POST', '/api/v1/image/segment', { image, prompts: [text('car')] });
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'shutting_down');
    assert.equal(refused.headers.connection, 'close');
    assert.ok(refused.headers['retry-after']);
    assert.equal((await request(srv.base, 'GET', '/health/live')).status, 200, 'probes still answer while draining');

    // 4. The request in flight finishes normally, told to reconnect elsewhere next time.
    slow.end(body.subarray(10));
    const done = await slowAnswer;
    assert.equal(done.status, 200, JSON.stringify(done.body));
    assert.ok(done.body.num_masks >= 0);
    assert.equal(done.headers.connection, 'close');

    // 5. Then the socket closes and native memory is freed.
    await closing;
    assert.equal(srv.svc.phase(), 'closed');
    assert.equal(srv.svc.pool(), undefined);
    await assert.rejects(request(srv.base, 'GET', '/health/live'), /ECONNREFUSED/);
    const msgs = srv.logs.map((l) => l.msg);
    const order = ['draining', 'shutting down', 'shut down'].map((m) => msgs.findIndex((x) => x.startsWith(m)));
    assert.ok(order.every((i, k) => i >= 0 && (k === 0 || i > order[k - 1]!)), msgs.join(' | '));
  });
});

describe('SIGTERM to the server process with SHUTDOWN_DELAY_MS', () => {
  it('flips readiness, serves on, exits 0 after the delay', async () => {
    const srv = await spawnServer({ SHUTDOWN_DELAY_MS: '2000' });
    try {
      const base = `http://127.0.0.1:${await srv.port}`;
      await until(async () => (await request(base, 'GET', '/health/ready')).status === 200, 120_000, 'readiness');
      const started = Date.now();
      srv.child.kill('SIGTERM');
      await srv.waitFor((l) => l.msg.startsWith('draining'), 10_000);
      assert.equal((await request(base, 'GET', '/health/ready')).status, 503);
      assert.equal((await get(base, '/models/info')).status, 200, 'still serving during the delay');
      assert.equal(await srv.exited, 0, srv.stderr());
      assert.ok(Date.now() - started >= 2000, 'exited after the delay');
    } finally {
      if (srv.child.exitCode === null) srv.child.kill('SIGKILL');
    }
  });
});
