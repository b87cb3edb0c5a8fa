/**
 * The CPU image, built and run with podman on this machine (`npm run test:container`, part of
 * `npm test`). No registry is reachable here, so the base image is bootstrapped from Debian's mirror
 * with mmdebstrap (bookworm minbase, cached by month in ~/.cache/sam3-container) and stands in for
 * debian:bookworm-slim; the Node.js image is this machine's own node and npm (the official image's
 * layout, /usr/local); the torch wheel comes from wherever pip finds it (a local folder here) through
 * the `wheels` build context with --no-index; extra CA certificates of an HTTPS proxy go in through
 * the `certs` context (builder only). npm packages come from the registry during the build.
 *
 * The container then serves a tiny bundle (mounted read-only) as a non-root user with the server
 * as PID 1: /health and the HEALTHCHECK, a segment request, an upload to the /data volume, a video
 * session prompted and propagated over REST and WebSocket, and `podman stop` (SIGTERM) ending in a
 * clean exit 0 well before the kill.
 *
 * Needs podman and mmdebstrap (apt-get install podman buildah runc mmdebstrap). Without them the
 * test is skipped, unless SAM3_REQUIRE_DEPLOY_TOOLS=1 (CI sets it), when it fails.
 */
import assert from 'node:assert/strict';
import { type SpawnSyncOptions, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, renameSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import WebSocket from 'ws';

import { toolEnv, toolPath } from '../../src/video/ffmpeg.js';
import { fixture, pngImage, python, root, tempDir } from '../helpers.js';
import { get, postJson, postRaw } from '../server-helpers.js';

const TAG = 'localhost/sam3-server:test';
const W = 64;
const H = 48;
const FRAMES = 5;

const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missing = ['podman', 'mmdebstrap'].filter((c) => !have(c));
const skip = missing.length > 0 && process.env.SAM3_REQUIRE_DEPLOY_TOOLS !== '1' ? `${missing.join(', ')} not installed (apt-get install podman buildah runc mmdebstrap); SAM3_REQUIRE_DEPLOY_TOOLS=1 makes this a failure` : false;

let containersConf = '';

/** Runs a command (podman with this test's CONTAINERS_CONF), failing with its output. */
function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, env: { ...process.env, CONTAINERS_CONF: containersConf }, ...opts });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${String(r.stderr).slice(-4000)}\n${String(r.stdout).slice(-2000)}`);
  return String(r.stdout).trim();
}

/** A streamed command (long builds): its output goes to a log file; resolves with the exit code. */
function runLogged(cmd: string, args: string[], log: string): Promise<number | null> {
  const out = openSync(log, 'w');
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', out, out], env: { ...process.env, CONTAINERS_CONF: containersConf } });
    child.on('exit', (code) => {
      closeSync(out);
      resolve(code);
    });
  });
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Debian bookworm minbase as a podman image, bootstrapped once a month (cached tarball). */
function baseImage(): string {
  const month = new Date().toISOString().slice(0, 7);
  const tag = `localhost/sam3-test-base:bookworm-${month}`;
  if (spawnSync('podman', ['image', 'exists', tag], { env: { ...process.env, CONTAINERS_CONF: containersConf } }).status === 0) return tag;
  const cache = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'sam3-container');
  const tar = path.join(cache, `debian-bookworm-minbase-${month}.tar`);
  if (!existsSync(tar)) {
    mkdirSync(cache, { recursive: true });
    const partial = path.join(cache, `partial-${process.pid}.tar`);
    run('mmdebstrap', ['--variant=minbase', '--format=tar', '--include=ca-certificates', 'bookworm', partial, 'http://deb.debian.org/debian'], { timeout: 900_000 });
    renameSync(partial, tar);
  }
  run('podman', ['import', '--change', 'CMD ["bash"]', tar, tag]);
  return tag;
}

/** This machine's node and npm, laid out as in the official node image (/usr/local). */
async function nodeImage(dir: string): Promise<string> {
  const tag = `localhost/sam3-test-node:${process.version}`;
  if (spawnSync('podman', ['image', 'exists', tag], { env: { ...process.env, CONTAINERS_CONF: containersConf } }).status === 0) return tag;
  const npm = path.resolve(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
  assert.ok(existsSync(path.join(npm, 'bin', 'npm-cli.js')), `npm next to node (${npm})`);
  const tree = path.join(dir, 'node-image');
  await mkdir(path.join(tree, 'usr', 'local', 'bin'), { recursive: true });
  await mkdir(path.join(tree, 'usr', 'local', 'lib', 'node_modules'), { recursive: true });
  run('cp', ['-L', process.execPath, path.join(tree, 'usr', 'local', 'bin', 'node')]);
  run('cp', ['-a', npm, path.join(tree, 'usr', 'local', 'lib', 'node_modules', 'npm')]);
  run('ln', ['-s', '../lib/node_modules/npm/bin/npm-cli.js', path.join(tree, 'usr', 'local', 'bin', 'npm')]);
  run('tar', ['-C', tree, '-cf', path.join(dir, 'node.tar'), '.']);
  run('podman', ['import', path.join(dir, 'node.tar'), tag]);
  return tag;
}

async function makeVideo(file: string): Promise<void> {
  const child = spawn(toolPath('ffmpeg'), ['-v', 'error', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${W}x${H}`, '-r', '10', '-i', '-', '-c:v', 'mpeg4', '-q:v', '3', '-pix_fmt', 'yuv420p', '-y', file], {
    env: toolEnv('ffmpeg'),
    stdio: ['pipe', 'ignore', 'inherit'],
  });
  for (let t = 0; t < FRAMES; t++) {
    const rgb = new Uint8Array(W * H * 3);
    for (let i = 0; i < W * H; i++) {
      const x = i % W;
      const y = Math.floor(i / W);
      const inside = x >= 8 + 5 * t && x < 24 + 5 * t && y >= 12 && y < 28;
      rgb.set(inside ? [220, 60, 40] : [30 + ((x * 7 + y * 3) % 40), 50, 90], i * 3);
    }
    child.stdin!.write(rgb);
  }
  child.stdin!.end();
  assert.equal(await new Promise((r) => child.on('close', r)), 0);
}

describe('the CPU image (podman)', { skip, timeout: 45 * 60_000 }, () => {
  let dir: string;
  let base: string;
  let name: string;

  before(async () => {
    dir = await tempDir('sam3-container-');
    containersConf = path.join(dir, 'containers.conf');
    // podman 4.3 here runs containers only with runc, cgroupfs and explicit ulimits.
    await writeFile(containersConf, '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n');
  });

  after(async () => {
    if (name) spawnSync('podman', ['rm', '-f', '-t', '0', name], { env: { ...process.env, CONTAINERS_CONF: containersConf } });
    // The image and the build's layers stay: the next run builds only what changed. (Older layers
    // pile up in podman's storage; `podman image prune` clears the untagged ones.)
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('builds from Dockerfile with a local torch wheel', async (t) => {
    const t0 = Date.now();
    const baseTag = baseImage();
    const nodeTag = await nodeImage(dir);
    t.diagnostic(`base and node images: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    // The torch wheel from where pip finds it (here a local folder; elsewhere the index).
    const wheels = path.join(dir, 'wheels');
    run(python, ['-m', 'pip', 'download', '--retries', '0', '--no-deps', '--only-binary=:all:', '-d', wheels, 'torch==2.13.0'], { timeout: 600_000 });
    t.diagnostic(`wheels: ${(await readdir(wheels)).join(', ')}`);
    const certs = path.join(dir, 'certs');
    await mkdir(certs);
    if (existsSync('/usr/local/share/ca-certificates')) run('sh', ['-c', `cp /usr/local/share/ca-certificates/*.crt ${certs}/ 2>/dev/null || true`]);
    const t1 = Date.now();
    const log = path.join(dir, 'build.log');
    const code = await runLogged(
      'podman',
      [
        'build', '--isolation', 'chroot', '--format', 'docker', '-f', path.join(root, 'Dockerfile'),
        '--build-arg', `BUILD_BASE=${baseTag}`, '--build-arg', `RUNTIME_BASE=${baseTag}`, '--build-arg', `NODE_IMAGE=${nodeTag}`,
        '--build-arg', 'TORCH_PIP_ARGS=--no-index --no-deps',
        '--build-context', `wheels=${wheels}`, '--build-context', `certs=${certs}`,
        '-t', TAG, root,
      ],
      log,
    );
    assert.equal(code, 0, `podman build failed; the end of its log:\n${run('tail', ['-n', '60', log])}`);
    const size = Number(run('podman', ['image', 'inspect', '--format', '{{.Size}}', TAG]));
    t.diagnostic(`build: ${((Date.now() - t1) / 1000).toFixed(0)} s; image size ${(size / 1e6).toFixed(0)} MB`);
    const labels = JSON.parse(run('podman', ['image', 'inspect', '--format', '{{json .Config.Labels}}', TAG])) as Record<string, string>;
    assert.equal(labels['org.opencontainers.image.title'], 'sam3-server');
    assert.equal(labels['io.sam3.device'], 'cpu');
  });

  it('serves a tiny bundle as a non-root PID 1: health, segment, video over REST and WebSocket', async () => {
    // The test suite's tiny bundle (same kind as models/demo, always of the current bundle format).
    const { bundle } = await fixture();
    const port = await freePort();
    name = `sam3-test-${process.pid}`;
    run('podman', [
      'run', '-d', '--name', name, '-p', `127.0.0.1:${port}:8000`,
      '-v', `${bundle}:/models/sam3:ro`,
      '-e', 'ENGINE_THREADS=2', '-e', 'IMAGE_MODEL_WARMUP=false',
      TAG,
    ]);
    base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 180_000;
    for (;;) {
      try {
        if ((await get(base, '/health')).status === 200) break;
      } catch {
        // not listening yet
      }
      assert.ok(Date.now() < deadline, `no healthy server within 180 s:\n${run('podman', ['logs', '--tail', '40', name])}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(spawnSync('podman', ['healthcheck', 'run', name], { env: { ...process.env, CONTAINERS_CONF: containersConf } }).status, 0, 'the HEALTHCHECK passes');
    assert.equal(run('podman', ['exec', name, 'id', '-u']), '10001', 'not root');
    assert.equal(run('podman', ['exec', name, 'cat', '/proc/1/cmdline']).replaceAll('\0', ' ').trim(), 'node dist/server/main.js', 'the server is PID 1');

    const seg = await postJson(base, '/api/v1/image/segment', { image: (await pngImage(48, 40, 7)).toString('base64'), prompts: [{ type: 'text', text: 'cat' }], confidence_threshold: 0 });
    assert.equal(seg.status, 200, seg.text);
    assert.ok(seg.body.num_masks > 0 && seg.body.masks[0].counts.length > 0, 'masks came back');

    const clip = path.join(dir, 'clip.mp4');
    await makeVideo(clip);
    const form = new FormData();
    form.append('file', new Blob([await readFile(clip)]), 'clip.mp4');
    const up = await postRaw(base, '/api/v1/video/upload', form);
    assert.equal(up.status, 200, `upload to the /data volume as the image's user: ${up.text}`);
    const s = await postJson(base, '/api/v1/video/session/start', { video_id: up.body.video_id });
    assert.equal(s.status, 200, s.text);
    const id = s.body.session_id as string;
    const p = await postJson(base, `/api/v1/video/session/${id}/prompt`, { frame_index: 0, prompts: [{ type: 'box', box: [8 / W, 12 / H, 16 / W, 16 / H] }] });
    assert.equal(p.status, 200, p.text);
    const rest = await postJson(base, `/api/v1/video/session/${id}/propagate`, { direction: 'forward' });
    assert.equal(rest.status, 200, rest.text);
    assert.equal(rest.body.total_frames, FRAMES);
    const frames = await new Promise<number[]>((resolve, reject) => {
      const ws = new WebSocket(`${base.replace('http', 'ws')}/api/v1/video/ws/propagate/${id}`);
      const got: number[] = [];
      ws.on('open', () => ws.send(JSON.stringify({ direction: 'forward' })));
      ws.on('message', (data) => {
        const m = JSON.parse(data.toString()) as { type: string; frame_index?: number };
        if (m.type === 'frame') got.push(m.frame_index!);
        if (m.type === 'complete') {
          ws.close();
          resolve(got);
        }
        if (m.type === 'error') reject(new Error(data.toString()));
      });
      ws.on('error', reject);
    });
    assert.deepEqual(frames, Array.from({ length: FRAMES }, (_, i) => i));
  });

  it('stops cleanly on SIGTERM (podman stop): exit 0, shut down in the log, before the kill', (t) => {
    const t0 = Date.now();
    run('podman', ['stop', '-t', '30', name]);
    const seconds = (Date.now() - t0) / 1000;
    assert.equal(run('podman', ['inspect', '--format', '{{.State.ExitCode}}', name]), '0');
    assert.ok(seconds < 25, `stopped in ${seconds.toFixed(1)} s, before the 30 s kill`);
    t.diagnostic(`podman stop took ${seconds.toFixed(1)} s`);
    const logs = run('podman', ['logs', name]);
    assert.match(logs, /"signal":"SIGTERM".*"msg":"signal received: shutting down gracefully"/);
    assert.match(logs, /"msg":"shut down"/);
  });
});
