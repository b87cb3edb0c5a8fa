#!/usr/bin/env node
// `npm install` runs this (postinstall). It makes the project usable on a fresh clone:
//   1. a project-local Python venv (.venv) with the pinned export tools (scripts/requirements.txt);
//   2. the native addon, built with cmake-js against libtorch from that venv (or $LIBTORCH);
//   3. the TypeScript build (dist/);
//   4. a tiny, randomly initialised demo model bundle (models/demo) so `npm start` serves something.
// Each step is skipped when its output is up to date. Set SAM3_SKIP_SETUP=1 to skip everything
// (e.g. when installed as a dependency whose parent builds it), SAM3_SKIP_DEMO=1 to skip step 4.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const venv = path.join(root, '.venv');
const python = path.join(venv, 'bin', 'python');
const OPEN_CLIP = 'open_clip_torch==3.3.0';

function log(msg) {
  console.log(`[sam3 setup] ${msg}`);
}

function run(cmd, args, opts = {}) {
  log(`$ ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
  if (r.status !== 0) {
    console.error(`[sam3 setup] failed: ${cmd} ${args.join(' ')} (exit ${r.status ?? r.signal})`);
    process.exit(r.status || 1);
  }
}

if (process.env.SAM3_SKIP_SETUP === '1') {
  log('SAM3_SKIP_SETUP=1: nothing to do');
  process.exit(0);
}

// 1. Python export tools.
const requirements = readFileSync(path.join(root, 'scripts', 'requirements.txt'), 'utf8');
const want = createHash('sha256').update(requirements + OPEN_CLIP).digest('hex');
const stamp = path.join(venv, '.sam3-requirements');
if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== want) {
  const bootstrap = process.env.SAM3_PYTHON_BOOTSTRAP ?? 'python3';
  if (!existsSync(python)) run(bootstrap, ['-m', 'venv', venv]);
  // --retries 0: where the public index is unreachable pip falls back to local wheels at once.
  run(python, ['-m', 'pip', 'install', '--retries', '0', '-r', path.join(root, 'scripts', 'requirements.txt')]);
  // Only the CLIP vocabulary file is used; open_clip's dependencies would pull an incompatible torchvision.
  run(python, ['-m', 'pip', 'install', '--retries', '0', '--no-deps', OPEN_CLIP]);
  writeFileSync(stamp, want);
} else {
  log('python venv up to date');
}

// 2. Native addon.
if (process.env.SAM3_SKIP_NATIVE === '1') log('SAM3_SKIP_NATIVE=1: not building the addon');
else run(process.execPath, [path.join(root, 'scripts', 'build-native.mjs')]);

// 3. TypeScript.
run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', root]);

// 4. Demo bundle (exported again when it is of an older bundle format than this server reads).
const demo = path.join(root, 'models', 'demo');
const { BUNDLE_FORMAT_VERSION } = await import(pathToFileURL(path.join(root, 'dist', 'bundle.js')).href);
async function demoFormat() {
  try {
    return JSON.parse(readFileSync(path.join(demo, 'manifest.json'), 'utf8')).format_version;
  } catch {
    return undefined;
  }
}
if (process.env.SAM3_SKIP_DEMO === '1') {
  log('SAM3_SKIP_DEMO=1: no demo bundle');
} else if (existsSync(path.join(demo, 'manifest.json')) && (await demoFormat()) === BUNDLE_FORMAT_VERSION) {
  log(`demo bundle present: ${demo}`);
} else {
  if (existsSync(path.join(demo, 'manifest.json'))) log('the demo bundle is from an older exporter: exporting it again');
  const ckpt = path.join(root, 'models', 'demo-checkpoint');
  run(python, [path.join(root, 'scripts', 'make_tiny_checkpoint.py'), '--out', ckpt, '--seed', '0']);
  run(python, [path.join(root, 'scripts', 'export_sam3.py'), '--checkpoint', ckpt, '--out', demo]);
}
log('done');
