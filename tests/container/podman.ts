/**
 * What the container tests share: podman with this machine's settings, the stand-in base images
 * (no registry is reachable here), a build with its log kept, and the serving checks run against a
 * started container. Used by image.test.ts (the CPU image, in `npm test`) and cuda-image.test.ts
 * (`npm run test:container:cuda`).
 */
import assert from 'node:assert/strict';
import { type SpawnSyncOptions, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, renameSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';

import WebSocket from 'ws';

import { toolEnv, toolPath } from '../../src/video/ffmpeg.js';
import { pngImage } from '../helpers.js';
import { get, postJson, postRaw } from '../server-helpers.js';

const W = 64;
const H = 48;
const FRAMES = 5;

const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** The node:test skip value: a reason when podman or mmdebstrap is missing (a failure in CI). */
export function skipWithoutTools(): string | false {
  const missing = ['podman', 'mmdebstrap'].filter((c) => !have(c));
  if (missing.length === 0 || process.env.SAM3_REQUIRE_DEPLOY_TOOLS === '1') return false;
  return `${missing.join(', ')} not installed (apt-get install podman buildah runc mmdebstrap); SAM3_REQUIRE_DEPLOY_TOOLS=1 makes this a failure`;
}

let containersConf = '';

/** Writes the containers.conf that podman 4.3 needs here (runc, cgroupfs, explicit ulimits). */
export async function configurePodman(dir: string): Promise<void> {
  containersConf = path.join(dir, 'containers.conf');
  await writeFile(containersConf, '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n');
}

export const podmanEnv = (): NodeJS.ProcessEnv => ({ ...process.env, CONTAINERS_CONF: containersConf });

/** Runs a command (podman with this test's CONTAINERS_CONF), failing with its output. */
export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, env: podmanEnv(), ...opts });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${String(r.stderr).slice(-4000)}\n${String(r.stdout).slice(-2000)}`);
  return String(r.stdout).trim();
}

/** Runs a command that may fail; its status and output. */
export function attempt(cmd: string, args: string[]): { status: number | null; output: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, env: podmanEnv() });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

/** A streamed command (long builds): its output goes to a log file; resolves with the exit code. */
export function runLogged(cmd: string, args: string[], log: string): Promise<number | null> {
  const out = openSync(log, 'w');
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', out, out], env: podmanEnv() });
    child.on('exit', (code) => {
      closeSync(out);
      resolve(code);
    });
  });
}

/** `podman build` with the log in a file; fails with the log's end. */
export async function build(args: string[], log: string): Promise<void> {
  const code = await runLogged('podman', ['build', '--isolation', 'chroot', '--format', 'docker', ...args], log);
  assert.equal(code, 0, `podman build failed; the end of its log:\n${run('tail', ['-n', '60', log])}`);
}

export const imageExists = (tag: string) => spawnSync('podman', ['image', 'exists', tag], { env: podmanEnv() }).status === 0;

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

export const cacheDir = () => path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'sam3-container');

/** Debian bookworm minbase as a podman image, bootstrapped once a month (cached tarball). */
export function baseImage(): string {
  const month = new Date().toISOString().slice(0, 7);
  const tag = `localhost/sam3-test-base:bookworm-${month}`;
  if (imageExists(tag)) return tag;
  const cache = cacheDir();
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
export async function nodeImage(dir: string): Promise<string> {
  const tag = `localhost/sam3-test-node:${process.version}`;
  if (imageExists(tag)) return tag;
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

/** Any extra CA certificates of this machine (an HTTPS proxy's), for the `certs` build context. */
export async function certsContext(dir: string): Promise<string> {
  const certs = path.join(dir, 'certs');
  await mkdir(certs, { recursive: true });
  if (existsSync('/usr/local/share/ca-certificates')) run('sh', ['-c', `cp /usr/local/share/ca-certificates/*.crt ${certs}/ 2>/dev/null || true`]);
  return certs;
}

/** Waits for /health to answer 200, failing with the container's log. */
export async function waitHealthy(base: string, name: string, timeoutMs = 180_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await get(base, '/health')).status === 200) return;
    } catch {
      // not listening yet
    }
    assert.ok(Date.now() < deadline, `no healthy server within ${timeoutMs / 1000} s:\n${run('podman', ['logs', '--tail', '40', name])}`);
    await new Promise((r) => setTimeout(r, 500));
  }
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

/**
 * The serving checks: a segment request, an upload to the /data volume (as the image's user), a
 * video session prompted and propagated over REST and then over the WebSocket.
 */
export async function exerciseServer(base: string, dir: string): Promise<void> {
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
}

/** `podman stop` (SIGTERM): exit 0 well before the 30 s kill, with the shutdown in the log. */
export function stopCleanly(name: string): number {
  const t0 = Date.now();
  run('podman', ['stop', '-t', '30', name]);
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(run('podman', ['inspect', '--format', '{{.State.ExitCode}}', name]), '0');
  assert.ok(seconds < 25, `stopped in ${seconds.toFixed(1)} s, before the 30 s kill`);
  const logs = run('podman', ['logs', name]);
  assert.match(logs, /"signal":"SIGTERM".*"msg":"signal received: shutting down gracefully"/);
  assert.match(logs, /"msg":"shut down"/);
  return seconds;
}
