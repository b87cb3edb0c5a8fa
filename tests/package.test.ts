/**
 * The package as a consumer gets it. `npm pack` of the project (prepack builds dist/) and of the
 * prebuilt addon package (scripts/make-prebuilt.mjs from build/Release), installed into a fresh
 * project with `npm ci --offline --strict-allow-scripts` (the consumer approves sam3-server's install
 * script in package.json "allowScripts", as the README says). npm 11 asks the registry for full
 * package metadata for every dependency it resolves anew, which a lockfile install never caches, so
 * the consumer gets a lockfile made from the project's own (its production entries, plus the two
 * tarballs): npm then needs only what `npm install` of the project already cached.
 *
 * torch comes from `python3` on PATH (the project's .venv/bin first on PATH), so the install takes
 * the "existing torch install" path, and SAM3_BUILD_FROM_SOURCE=never makes a prebuilt that does not
 * fit a failure instead of a 10-minute compile. Then the consumer imports the library from an .mjs
 * (segments an image with models/demo), type-checks a .ts against the shipped types, and runs the
 * CLI: --help, doctor, and serve until /health is 200, then SIGTERM.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { readNeeded, readRunpath } from '../scripts/lib/elf.mjs';
import { serveEnv } from '../scripts/lib/serve-env.mjs';
import { root, tempDir } from './helpers.js';

const demo = path.join(root, 'models', 'demo');
const venvBin = path.join(root, '.venv', 'bin');
const skip = !existsSync(path.join(root, 'build', 'Release', 'sam3.node'))
  ? 'build/Release/sam3.node is not built (npm install)'
  : !existsSync(path.join(demo, 'manifest.json'))
    ? 'models/demo is missing (npm install)'
    : !existsSync(path.join(venvBin, 'python3'))
      ? '.venv is missing (npm install)'
      : false;

/** The environment of a consumer's shell: no npm script variables, no settings that would steer discovery. */
function consumerEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_registry', 'npm_config_userconfig', 'npm_config_globalconfig']);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('npm_') && !keep.has(k)) continue;
    if (['LIBTORCH', 'SAM3_PYTHON', 'SAM3_ADDON_PATH', 'SAM3_CHECKPOINT', 'NODE_OPTIONS', 'SAM3_SKIP_SETUP'].includes(k)) continue;
    env[k] = v;
  }
  env.PATH = `${venvBin}${path.delimiter}${process.env.PATH ?? ''}`;
  return { ...env, ...extra };
}

function sh(cmd: string, args: string[], cwd: string, env = consumerEnv(), timeout = 300_000) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout, maxBuffer: 64 * 1024 * 1024 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${out.slice(-4000)}`);
  return r.stdout;
}

const integrity = (file: string) => `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;

interface LockEntry {
  version?: string;
  dev?: boolean;
  [key: string]: unknown;
}

/** The consumer's lockfile: the project's production packages as they are hoisted, plus the two tarballs. */
function consumerLock(dependencies: Record<string, string>, main: string, prebuilt: string, dir: string) {
  const lock = JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const own = lock.packages['']!;
  const packages: Record<string, unknown> = { '': { name: 'consumer', version: '1.0.0', dependencies } };
  for (const [key, entry] of Object.entries(lock.packages)) if (key && !entry.dev) packages[key] = entry;
  // The consumer's own dependencies that are our devDependencies (@types/node), with what they
  // need: without their entries npm ci asks the registry for their metadata, which an offline
  // cache filled by a lockfile install does not hold (ENOTCACHED on a fresh machine).
  const addTree = (key: string) => {
    const entry = lock.packages[key];
    if (!entry || packages[key]) return;
    const { dev: _dev, devOptional: _devOptional, ...rest } = entry;
    packages[key] = rest;
    for (const dep of Object.keys((entry.dependencies as Record<string, string> | undefined) ?? {})) {
      const nested = `${key}/node_modules/${dep}`;
      addTree(lock.packages[nested] ? nested : `node_modules/${dep}`);
    }
  };
  for (const name of Object.keys(dependencies)) addTree(`node_modules/${name}`);
  const pick = (e: LockEntry, keys: string[]) => Object.fromEntries(keys.filter((k) => k in e).map((k) => [k, e[k]]));
  packages['node_modules/sam3-server'] = {
    ...pick(own, ['version', 'license', 'dependencies', 'optionalDependencies', 'bin', 'engines', 'hasInstallScript']),
    resolved: `file:${path.relative(dir, main)}`,
    integrity: integrity(main),
  };
  const pb = JSON.parse(readFileSync(path.join(path.dirname(prebuilt), 'linux-x64-cpu', 'package.json'), 'utf8')) as LockEntry;
  packages['node_modules/@sam3-server/linux-x64-cpu'] = {
    ...pick(pb, ['version', 'license', 'os', 'cpu', 'libc']),
    resolved: `file:${path.relative(dir, prebuilt)}`,
    integrity: integrity(prebuilt),
  };
  return { name: 'consumer', version: '1.0.0', lockfileVersion: 3, requires: true, packages };
}

const CONSUMER_MJS = `
import { readFileSync } from 'node:fs';
import { Sam3Model, decodeRle, runtimeInfo } from 'sam3-server';

const [bundle, image] = process.argv.slice(2);
const model = await Sam3Model.load(bundle, { device: 'cpu' });
const features = await model.encodeImage(readFileSync(image));
const result = await model.segment(features, { text: 'a red square' }, { threshold: 0 });
const pixels = result.masks.map((m) => decodeRle(m.counts, m.size[0], m.size[1]).reduce((a, b) => a + b, 0));
console.log(JSON.stringify({ torch: runtimeInfo().torchVersion, numMasks: result.numMasks, scores: Array.from(result.scores), boxes: result.boxes.length, sizes: result.masks.map((m) => m.size), pixels }));
features.dispose();
model.dispose();
`;

const CONSUMER_TS = `
import { Sam3Model, Sam3Error, ErrorCode, type LoadOptions, type Prompt, type Segmentation } from 'sam3-server';

const options: LoadOptions = { device: 'cpu' };

export async function countMasks(bundle: string, image: Uint8Array, prompt: Prompt): Promise<number> {
  const model = await Sam3Model.load(bundle, options);
  try {
    const features = await model.encodeImage(image);
    const result: Segmentation = await model.segment(features, prompt, { threshold: 0.5 });
    features.dispose();
    return result.numMasks;
  } catch (err) {
    if (err instanceof Sam3Error && err.code === ErrorCode.InvalidImage) return 0;
    throw err;
  } finally {
    model.dispose();
  }
}

export function wrongUse(model: Sam3Model) {
  // @ts-expect-error tokenize takes strings (without real types this directive itself is an error)
  return model.tokenize(42);
}
`;

describe('sam3-server installed as a library into a fresh project', { skip, concurrency: false }, () => {
  let dir = '';
  let consumer = '';
  let installLog = '';

  before(async () => {
    dir = await tempDir('sam3-package-');
    const packs = path.join(dir, 'packs');
    mkdirSync(packs);
    // The project's tarball (prepack compiles dist/) and the prebuilt package from build/Release.
    const packed = JSON.parse(sh('npm', ['pack', '--json', '--pack-destination', packs], root, { ...consumerEnv(), PATH: process.env.PATH ?? '' })) as { filename: string }[];
    const main = path.join(packs, packed[0]!.filename);
    const made = sh(process.execPath, [path.join(root, 'scripts', 'make-prebuilt.mjs'), '--out', packs, '--pack'], root);
    const prebuilt = made.trim().split('\n').pop()!;
    assert.ok(existsSync(prebuilt), `the prebuilt tarball ${prebuilt}`);

    consumer = path.join(dir, 'consumer');
    mkdirSync(consumer);
    const types = (JSON.parse(readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> }).packages['node_modules/@types/node']!.version!;
    const dependencies = {
      'sam3-server': `file:${path.relative(consumer, main)}`,
      '@sam3-server/linux-x64-cpu': `file:${path.relative(consumer, prebuilt)}`,
      '@types/node': types,
    };
    const pkg = {
      name: 'consumer',
      version: '1.0.0',
      private: true,
      type: 'module',
      dependencies,
      // npm 11: the install scripts this project approves (what `npm install-scripts approve` writes).
      allowScripts: { [`file:${main}`]: true, '@ffmpeg-installer/linux-x64': true, '@ffprobe-installer/linux-x64': true, '@scarf/scarf': false },
    };
    writeFileSync(path.join(consumer, 'package.json'), JSON.stringify(pkg, null, 2));
    writeFileSync(path.join(consumer, 'package-lock.json'), JSON.stringify(consumerLock(dependencies, main, prebuilt, consumer), null, 2));
    installLog = sh(
      'npm',
      ['ci', '--offline', '--no-audit', '--no-fund', '--strict-allow-scripts', '--foreground-scripts'],
      consumer,
      consumerEnv({ SAM3_BUILD_FROM_SOURCE: 'never' }),
    );
  });

  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the tarball ships dist/, the CLI, the native sources and scripts, and no tests or TypeScript sources', () => {
    const files = sh('tar', ['tzf', path.join(dir, 'packs', 'sam3-server-0.1.0.tgz')], dir).split('\n').filter(Boolean);
    for (const f of ['package/dist/index.js', 'package/dist/index.d.ts', 'package/dist/server/main.js', 'package/bin/sam3-server.mjs', 'package/scripts/setup.mjs', 'package/scripts/lib/torch.mjs', 'package/scripts/export_sam3.py', 'package/CMakeLists.txt', 'package/native/binding/addon.cc']) {
      assert.ok(files.includes(f), `${f} is in the tarball`);
    }
    assert.deepEqual(files.filter((f) => /^package\/(src|tests|bench|models|build|\.venv)\//.test(f) || f.includes('__pycache__')), []);
  });

  it('the install found torch through python3 on PATH and chose the prebuilt addon', () => {
    const record = JSON.parse(readFileSync(path.join(consumer, 'node_modules', 'sam3-server', 'build', 'install.json'), 'utf8'));
    assert.equal(record.mode, 'dependency');
    assert.equal(record.addon.kind, 'prebuilt');
    assert.equal(record.addon.path, path.join(consumer, 'node_modules', '@sam3-server', 'linux-x64-cpu', 'sam3.node'));
    assert.equal(record.libtorch.source, 'python');
    assert.equal(record.libtorch.python, path.join(venvBin, 'python3'));
    assert.ok(existsSync(path.join(record.libtorch.libDir, 'libtorch_cpu.so')), record.libtorch.libDir);
    assert.match(installLog, /libtorch: torch 2\.\d+\.\d+\S* \(CPU\) at .* \(on PATH\)/);
    assert.match(installLog, /addon: prebuilt @sam3-server\/linux-x64-cpu/);
    // No compile, no TypeScript, no demo export in a consumer's install.
    assert.ok(!existsSync(path.join(consumer, 'node_modules', 'sam3-server', 'build', 'Release')));
    assert.doesNotMatch(installLog, /cmake-js|tsc|export_sam3/);
  });

  it('the prebuilt addon names libtorch by soname only: a plain require fails, the loader preloads libtorch', () => {
    const addon = path.join(consumer, 'node_modules', '@sam3-server', 'linux-x64-cpu', 'sam3.node');
    assert.equal(readRunpath(addon), '$ORIGIN');
    assert.deepEqual(readNeeded(addon).filter((n) => /torch|c10/.test(n)), ['libc10.so', 'libtorch_cpu.so', 'libtorch.so']);
    const plain = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', addon], { cwd: consumer, env: consumerEnv(), encoding: 'utf8' });
    assert.notEqual(plain.status, 0);
    assert.match(plain.stderr, /libc10\.so: cannot open shared object file/);
  });

  it('an .mjs imports the package and segments an image with the demo bundle', async () => {
    const sharp = (await import('sharp')).default;
    const image = path.join(consumer, 'square.png');
    const square = Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="96" height="64"><rect width="96" height="64" fill="#ddd"/><rect x="20" y="12" width="40" height="40" fill="#c22"/></svg>`);
    await sharp(square).png().toFile(image);
    writeFileSync(path.join(consumer, 'segment.mjs'), CONSUMER_MJS);
    const out = JSON.parse(sh(process.execPath, ['segment.mjs', demo, image], consumer).trim().split('\n').pop()!) as {
      torch: string;
      numMasks: number;
      scores: number[];
      boxes: number;
      sizes: number[][];
      pixels: number[];
    };
    assert.match(out.torch, /^2\./);
    assert.ok(out.numMasks > 0, 'threshold 0 keeps every query');
    assert.equal(out.scores.length, out.numMasks);
    assert.ok(out.scores.every((s) => s >= 0 && s <= 1));
    assert.deepEqual(out.sizes, Array.from({ length: out.numMasks }, () => [64, 96]), 'masks at the image size');
    assert.ok(out.pixels.every((p) => p >= 0 && p <= 64 * 96));
  });

  it('a .ts file type-checks against the shipped declarations (tsc --noEmit, strict)', () => {
    writeFileSync(path.join(consumer, 'consumer.ts'), CONSUMER_TS);
    writeFileSync(
      path.join(consumer, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] }, files: ['consumer.ts'] }),
    );
    sh(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], consumer);
    // The check is real: a wrong argument type is an error.
    writeFileSync(path.join(consumer, 'consumer.ts'), CONSUMER_TS.replace(/ *\/\/ @ts-expect-error.*\n/, ''));
    const r = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], { cwd: consumer, encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stdout, /consumer\.ts.*error TS2345/);
  });

  it('npx sam3-server --help and doctor', () => {
    const help = sh('npx', ['--offline', 'sam3-server', '--help'], consumer);
    assert.match(help, /Usage: sam3-server <command>/);
    for (const cmd of ['serve', 'export', 'doctor']) assert.match(help, new RegExp(`^  ${cmd}\\b`, 'm'));
    const report = JSON.parse(sh('npx', ['--offline', 'sam3-server', 'doctor', '--json'], consumer));
    assert.equal(report.package.mode, 'dependency');
    assert.equal(report.addon.kind, 'prebuilt');
    assert.equal(report.addon.loads, true);
    assert.equal(report.addon.libtorchLoadedFrom.dir, report.install.libtorch.libDir);
    assert.equal(report.python.path, path.join(venvBin, 'python3'));
    assert.match(report.python.torch, /^2\./);
    assert.equal(typeof report.cuda.available, 'boolean');
    assert.equal(typeof report.cmake?.version, 'string');
    assert.equal(report.demoBundle.present, false, 'a consumer install exports no demo bundle');
    const text = sh('npx', ['--offline', 'sam3-server', 'doctor'], consumer);
    assert.match(text, /^addon\s+prebuilt \(@sam3-server\/linux-x64-cpu\)/m);
    assert.match(text, /^addon loads\s+yes, torch 2\./m);
    // An unknown command is a usage error.
    const bad = spawnSync(path.join(consumer, 'node_modules', '.bin', 'sam3-server'), ['frobnicate'], { cwd: consumer, env: consumerEnv(), encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /unknown command 'frobnicate'/);
  });

  it('sam3-server serve runs the server in its own process: /health turns 200, SIGTERM exits 0', async () => {
    const bin = path.join(consumer, 'node_modules', '.bin', 'sam3-server');
    const child: ChildProcess = spawn(bin, ['serve'], {
      cwd: consumer,
      env: consumerEnv({ SERVER_PORT: '0', SERVER_HOST: '127.0.0.1', SAM3_CHECKPOINT: demo, LOG_LEVEL: 'info' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      let port = 0;
      const deadline = Date.now() + 180_000;
      let status = 0;
      while (Date.now() < deadline && status !== 200) {
        await new Promise((r) => setTimeout(r, 500));
        port ||= Number(/"port":(\d+)/.exec(log)?.[1] ?? 0);
        if (!port) continue;
        status = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status, () => 0);
      }
      assert.equal(status, 200, `the server became ready; log:\n${log.slice(-3000)}`);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, `exit status after SIGTERM; log:\n${log.slice(-3000)}`);
  });
});

describe('sam3-server serve: the environment it hands the server', () => {
  it("makes relative paths the current directory's, and points a dependency's writable defaults there", async () => {
    const cwd = await tempDir('sam3-serve-env-');
    mkdirSync(path.join(cwd, 'bundles', 'mine'), { recursive: true });
    writeFileSync(path.join(cwd, '.env'), 'MEDIA_ROOT=uploads\nSAM3_CHECKPOINT=bundles/mine\n');
    const dependency = serveEnv({ env: { SAM3_EXPORT_DIR: 'out' }, cwd, dependency: true, python: '/opt/py/bin/python3' });
    assert.deepEqual(dependency, {
      SAM3_EXPORT_DIR: path.join(cwd, 'out'),
      MEDIA_ROOT: path.join(cwd, 'uploads'),
      SAM3_CHECKPOINT: path.join(cwd, 'bundles', 'mine'),
      SAM3_PYTHON: '/opt/py/bin/python3',
    });
    // The environment wins over .env; a hub id (no such folder here) is left to the server.
    const hub = serveEnv({ env: { SAM3_CHECKPOINT: 'facebook/sam3', MEDIA_ROOT: '/srv/media' }, cwd, dependency: true, python: null });
    assert.equal(hub.SAM3_CHECKPOINT, undefined);
    assert.equal(hub.MEDIA_ROOT, '/srv/media');
    assert.equal(hub.SAM3_EXPORT_DIR, path.join(cwd, '.cache', 'bundles'));
    // In a developer's clone the server's own defaults (under the package root) stand.
    rmSync(path.join(cwd, '.env'));
    assert.deepEqual(serveEnv({ env: {}, cwd, dependency: false, python: null }), {});
    rmSync(cwd, { recursive: true, force: true });
  });
});
