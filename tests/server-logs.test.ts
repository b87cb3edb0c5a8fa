/**
 * The log as an operator reads it: probes at debug, real requests at info, what a client caused at
 * warn without a stack, server faults at error with the stack and the request id, a fatal start
 * failure as one line, LOG_LEVEL obeyed by the whole process (nothing on stderr: no NNPACK lines),
 * and libtorch's own warnings routed through the logger, deduplicated.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { after, before, describe, it } from 'node:test';

import { pino } from 'pino';

import { runtimeInfo } from '../src/index.js';
import { createApp } from '../src/server/core/app.js';
import { loadConfig } from '../src/server/core/config.js';
import { fixture, pngImage, root, tempDir } from './helpers.js';
import { type LogLine, type TestServer, b64, get, postJson, startServer } from './server-helpers.js';
import { spawnServer } from './server-process.js';

const text = (t: string) => ({ type: 'text', text: t });

const DEBUG = 20;
const INFO = 30;
const WARN = 40;
const ERROR = 50;
const FATAL = 60;

/** A port nothing listens on now (bound on 127.0.0.1 port 0 and released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function hasStack(line: LogLine): boolean {
  return JSON.stringify(line).includes('"stack"');
}

describe('log levels of the HTTP layer', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ MAX_QUEUE_SIZE: '2' }); // LOG_LEVEL debug: every line is captured
  });
  after(async () => srv?.close());
  const linesOf = (id: string | null) => srv.logs.filter((l) => l.req_id === id);

  it('probes and scrapes at debug, whatever they answer; real requests at info', async () => {
    for (const p of ['/health', '/health/live', '/health/ready', '/metrics']) {
      const r = await get(srv.base, p);
      assert.equal(r.status, 200, p);
      const lines = linesOf(r.headers.get('x-request-id'));
      assert.deepEqual(lines.map((l) => [l.msg, l.level]), [['request', DEBUG]], p);
    }
    const r = await postJson(srv.base, '/api/v1/image/segment', { image: b64(await pngImage(32, 32, 1)), prompts: [text('person')] });
    assert.equal(r.status, 200, r.text);
    const lines = linesOf(r.headers.get('x-request-id'));
    assert.deepEqual(lines.filter((l) => l.msg === 'request').map((l) => [l.level, l.status]), [[INFO, 200]]);
    assert.ok(lines.every((l) => l.level <= INFO), JSON.stringify(lines));
  });

  it('client errors (400, 404, 503 queue_full) at warn, without a stack', async () => {
    // A burst of distinct images past MAX_QUEUE_SIZE (2): the ones that find the queue full get 503
    // (a /batch answers those per item with 200 overall, so single requests it is).
    const queueFull = async () => {
      const images = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => pngImage(32, 32, 10 + i)));
      const burst = await Promise.all(images.map((png) => postJson(srv.base, '/api/v1/image/segment', { image: b64(png), prompts: [text('a')] })));
      const full = burst.find((x) => x.status === 503);
      assert.ok(full, `a burst of 6 past MAX_QUEUE_SIZE=2 gets a 503: ${burst.map((x) => x.status).join(' ')}`);
      return full;
    };
    const cases = [
      { name: '400 validation', r: await postJson(srv.base, '/api/v1/image/segment', { prompts: [text('a')] }), status: 400 },
      { name: '404 route', r: await get(srv.base, '/no/such/route'), status: 404 },
      { name: '503 queue_full', r: await queueFull(), status: 503 },
    ];
    for (const { name, r, status } of cases) {
      assert.equal(r.status, status, `${name}: ${r.text}`);
      const lines = linesOf(r.body.error.request_id);
      const refused = lines.filter((l) => l.msg === 'request refused');
      assert.equal(refused.length, 1, name);
      assert.equal(refused[0]!.level, WARN, name);
      assert.equal(refused[0]!.code, r.body.error.code, name);
      assert.equal(refused[0]!.status, status, name);
      assert.ok(!lines.some(hasStack), `${name}: no stack in ${JSON.stringify(lines)}`);
      assert.ok(lines.every((l) => l.level <= WARN), name);
      assert.deepEqual(lines.filter((l) => l.msg === 'request').map((l) => l.level), [INFO], name);
    }
  });

  it('the addon runs with NNPACK off (its "Could not initialize NNPACK!" lines cannot appear)', () => {
    assert.equal(runtimeInfo().nnpackEnabled, false);
  });

  // Last: it breaks this server's engine.
  it('a server fault is logged at error with its stack under the request id the client got', async () => {
    srv.svc.pool()!.workers[0]!.engine.close();
    const r = await postJson(srv.base, '/api/v1/image/segment', { image: b64(await pngImage(32, 32, 3)), prompts: [text('a')] });
    assert.equal(r.status, 500, r.text);
    const lines = linesOf(r.body.error.request_id);
    const failed = lines.filter((l) => l.level === ERROR);
    assert.equal(failed.length, 1, JSON.stringify(lines));
    assert.equal(failed[0]!.msg, 'request failed');
    assert.equal(failed[0]!.status, 500);
    assert.ok(hasStack(failed[0]!), 'the stack is in the line');
  });
});

describe('503 model_loading is a warning', () => {
  it('requests while the model loads are refused at warn without a stack', async () => {
    const bundle = (await fixture()).bundle;
    const config = loadConfig({ SAM3_CHECKPOINT: bundle, IMAGE_MODEL_WARMUP: 'false', LOG_LEVEL: 'debug' }, { envFile: false });
    const logs: LogLine[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(JSON.parse(line) as LogLine);
        done();
      },
    });
    // autoLoad false: the model stays 'loading' for as long as the test needs.
    const svc = createApp({ config, logger: pino({ level: 'debug' }, sink), autoLoad: false, defaultMetrics: false });
    const server = await svc.listen(0, '127.0.0.1');
    try {
      const base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
      const r = await postJson(base, '/api/v1/image/segment', { image: b64(await pngImage(32, 32, 4)), prompts: [text('a')] });
      assert.equal(r.status, 503);
      assert.equal(r.body.error.code, 'model_loading');
      const lines = logs.filter((l) => l.req_id === r.body.error.request_id);
      assert.deepEqual(lines.filter((l) => l.msg === 'request refused').map((l) => l.level), [WARN]);
      assert.ok(!lines.some(hasStack));
      const probe = await get(base, '/health/ready');
      assert.equal(probe.status, 503);
      assert.deepEqual(logs.filter((l) => l.req_id === probe.headers.get('x-request-id')).map((l) => l.level), [DEBUG], 'a failing probe is still a probe');
    } finally {
      await svc.close();
    }
  });
});

describe('the server process', () => {
  it('LOG_LEVEL=warn holds for the whole process: a segment request and a shutdown print only the warning, stderr stays empty', async () => {
    const port = await freePort();
    const srv = await spawnServer({ LOG_LEVEL: 'warn', SERVER_PORT: String(port) });
    try {
      const base = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + 120_000;
      while ((await get(base, '/health/ready').catch(() => ({ status: 0 }))).status !== 200) {
        assert.ok(Date.now() < deadline, `not ready: ${srv.stderr()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const ok = await postJson(base, '/api/v1/image/segment', { image: b64(await pngImage(48, 40, 5)), prompts: [text('person'), text('car')] });
      assert.equal(ok.status, 200, ok.text);
      const bad = await postJson(base, '/api/v1/image/segment', { prompts: [] });
      assert.equal(bad.status, 400);
      srv.child.kill('SIGTERM');
      assert.equal(await srv.exited, 0);
      assert.deepEqual(srv.logs.map((l) => [l.level, l.msg]), [[WARN, 'request refused']]);
      assert.deepEqual(srv.other, []);
      assert.equal(srv.stderr(), '', 'nothing bypasses the logger (no NNPACK or other libtorch lines)');
    } finally {
      if (srv.child.exitCode === null) srv.child.kill('SIGKILL');
    }
  });

  it('a model that cannot load is one fatal line, then exit 1', async () => {
    const dir = await tempDir('sam3-badbundle-');
    await writeFile(path.join(dir, 'manifest.json'), '{"format": "not-a-bundle"}');
    const srv = await spawnServer({ SAM3_CHECKPOINT: dir });
    assert.equal(await srv.exited, 1, srv.stderr());
    const severe = srv.logs.filter((l) => l.level >= ERROR);
    assert.equal(severe.length, 1, JSON.stringify(severe));
    assert.equal(severe[0]!.level, FATAL);
    assert.match(severe[0]!.msg, /^cannot serve: the model did not load: model bundle .*manifest\.json is invalid/);
    assert.equal(JSON.stringify(severe[0]).split('manifest.json is invalid').length - 1, 1, 'the cause appears once');
    assert.equal(srv.stderr(), '');
  });
});

describe("libtorch's warnings", () => {
  it('go to the logger from the engine thread, coalesced and deduplicated; without a listener to stderr', async () => {
    const dir = await tempDir('sam3-warn-');
    const script = path.join(dir, 'warn.mts'); // an ES module wherever the folder is
    await writeFile(
      script,
      `import { pino } from ${JSON.stringify(pathToFileURL(createRequire(path.join(root, 'package.json')).resolve('pino')).href)};
import { createEngine } from ${JSON.stringify(path.join(root, 'src', 'index.ts'))};
import { logNativeWarnings } from ${JSON.stringify(path.join(root, 'src', 'server', 'core', 'native-log.ts'))};
const settle = () => new Promise((r) => setTimeout(r, 300));
const engine = createEngine('cpu', 1);
await engine.native.warnForTest('sam3 relay check: no listener', 1);
const stop = logNativeWarnings(pino({ level: 'info' }));
await engine.native.warnForTest('sam3 relay check: routed', 1000);
await settle();
await engine.native.warnForTest('sam3 relay check: routed', 9500);
await settle();
stop();
engine.close();
`,
    );
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0, stderr);
    assert.equal(stderr.split('sam3 relay check: no listener').length - 1, 1, `without a listener: c10's stderr line\n${stderr}`);
    assert.ok(!stderr.includes('routed'), stderr);
    const lines = stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as LogLine);
    assert.ok(lines.length >= 2 && lines.length <= 5, `one line, then one per power of ten: ${stdout}`);
    for (const l of lines) {
      assert.equal(l.level, WARN);
      assert.equal(l.origin, 'libtorch');
      assert.match(l.msg, /^sam3 relay check: routed/);
      assert.match(String(l.location), /warnings|engine_wrap|:\d+$/);
    }
    assert.equal(lines[0]!.msg, 'sam3 relay check: routed');
    const last = lines[lines.length - 1]!;
    assert.ok((last.count as number) >= 10_000 && (last.count as number) <= 10_500, `${last.count}`);
    assert.match(last.msg, /\(raised \d+ times so far\)$/);
  });
});
