#!/usr/bin/env node
// `npm install` runs this (postinstall). It tells two situations apart:
//
// A developer's clone (src/ and tsconfig.json present, not under node_modules):
//   1. a project-local Python venv (.venv) with the pinned export tools (scripts/requirements.txt);
//   2. the native addon, built with cmake-js against libtorch from that venv (or $LIBTORCH);
//   3. the TypeScript build (dist/);
//   4. a tiny, randomly initialised demo model bundle (models/demo) so `npm start` serves something.
//   Each step is skipped when its output is up to date. SAM3_SKIP_DEMO=1 skips step 4,
//   SAM3_SKIP_NATIVE=1 step 2.
//
// Installed as a dependency (dist/ ships in the package; no TypeScript, no demo):
//   1. find libtorch: $LIBTORCH, $SAM3_PYTHON, the package's .venv, python3/python on PATH with
//      torch; if none, make the package's own .venv with the pinned torch from pip;
//   2. the addon: the prebuilt package for this platform (@sam3-server/linux-x64-cpu, an optional
//      dependency) when it fits that libtorch and loads, else a build from source with cmake-js
//      (SAM3_BUILD_FROM_SOURCE=always forces the build, =never forbids it).
//
// Both write build/install.json (what was found; `npx sam3-server doctor` shows it).
// SAM3_SKIP_SETUP=1 skips everything (the Dockerfile does the steps itself).
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** @param {string} msg */
function log(msg) {
  console.log(`[sam3-server setup] ${msg}`);
}

if (process.env.SAM3_SKIP_SETUP === '1') {
  log('SAM3_SKIP_SETUP=1: nothing to do');
  process.exit(0);
}

// Imported only now, so that the Dockerfile's `npm ci` needs no more than this file.
const { spawnSync } = await import('node:child_process');
const { createHash } = await import('node:crypto');
const { existsSync, readFileSync, writeFileSync } = await import('node:fs');
const { createRequire } = await import('node:module');
const { pathToFileURL } = await import('node:url');
const { findLibtorch, createVenv, venvPython } = await import('./lib/torch.mjs');
const { findPrebuilt, prebuiltFits, prebuiltName, isRepoCheckout, sourceAddon, writeRecord } = await import('./lib/addon.mjs');
const { buildFromSource, missingForBuild } = await import('./build-native.mjs');
const { OPEN_CLIP, exportToolsInstall } = await import('./lib/python-tools.mjs');

/** @param {string} msg @returns {never} */
function fail(msg, status = 1) {
  console.error(`[sam3-server setup] ${msg}`);
  process.exit(status);
}

/** @param {string} cmd @param {string[]} args */
function run(cmd, args) {
  log(`$ ${[cmd, ...args].join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root });
  if (r.status !== 0) fail(`failed: ${cmd} ${args.join(' ')} (exit ${r.status ?? r.signal})`, r.status || 1);
}

/** @param {import('./lib/torch.mjs').Libtorch} t */
const describe = (t) => `torch ${t.version}${t.cuda ? ` (CUDA ${t.cuda})` : ' (CPU)'} at ${t.dir}, from ${t.source === 'LIBTORCH' ? '$LIBTORCH' : `${t.python}${t.source === 'venv' ? " (the package's venv)" : t.source === 'python' ? ' (on PATH)' : ' ($SAM3_PYTHON)'}`}`;

/**
 * @param {import('./lib/torch.mjs').Libtorch | null} libtorch
 * @param {string[]} tried
 * @returns {asserts libtorch is import('./lib/torch.mjs').Libtorch}
 */
function buildOrFail(libtorch, tried) {
  const missing = missingForBuild(libtorch, tried);
  if (missing.length) {
    fail(
      `cannot build the addon from source; missing:\n  - ${missing.join('\n  - ')}\n` +
        'Install what is missing and run `npm rebuild sam3-server`, or install with SAM3_SKIP_SETUP=1 to go without the addon.',
    );
  }
  if (!libtorch) return fail('no libtorch');
  const status = buildFromSource({ root, libtorch });
  if (status !== 0) fail(`the build from source failed (cmake-js exit ${status}); the compiler's output is above`, status);
}

/**
 * Loads the addon the way the library will, in a child process, and returns its torch version.
 * @returns {{ ok: true, info: { torchVersion: string } } | { ok: false, error: string }}
 */
function checkLoads() {
  const url = pathToFileURL(path.join(root, 'dist', 'runtime.js')).href;
  const code = 'const m = await import(process.argv[1]); console.log(JSON.stringify(m.runtimeInfo()));';
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code, url], { encoding: 'utf8' });
  if (r.status === 0) return { ok: true, info: JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') };
  return { ok: false, error: (r.stderr || r.stdout).trim().split('\n').filter((l) => /Error|error:/.test(l))[0] ?? r.stderr.trim() };
}

async function developerSetup() {
  // 1. Python export tools.
  const python = venvPython(root);
  const requirements = readFileSync(path.join(root, 'scripts', 'requirements.txt'), 'utf8');
  const want = createHash('sha256').update(requirements + OPEN_CLIP).digest('hex');
  const stamp = path.join(root, '.venv', '.sam3-requirements');
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== want) {
    const bootstrap = process.env.SAM3_PYTHON_BOOTSTRAP ?? 'python3';
    if (!existsSync(python)) run(bootstrap, ['-m', 'venv', path.join(root, '.venv')]);
    // --retries 0: where the public index is unreachable pip falls back to local wheels at once.
    for (const [cmd, args] of exportToolsInstall(root, python)) run(cmd, args);
    writeFileSync(stamp, want);
  } else {
    log('python venv up to date');
  }

  // 2. Native addon (libtorch: $LIBTORCH, else $SAM3_PYTHON, else the venv).
  if (process.env.SAM3_SKIP_NATIVE === '1') {
    log('SAM3_SKIP_NATIVE=1: not building the addon');
  } else {
    const { libtorch, tried } = findLibtorch({ root });
    buildOrFail(libtorch, tried);
    writeRecord(root, { mode: 'repo', addon: { kind: 'source', path: sourceAddon(root) }, libtorch, at: new Date().toISOString() });
  }

  // 3. TypeScript.
  const tsPkg = createRequire(path.join(root, 'package.json')).resolve('typescript/package.json');
  run(process.execPath, [path.join(path.dirname(tsPkg), JSON.parse(readFileSync(tsPkg, 'utf8')).bin.tsc), '-p', root]);

  // 4. Demo bundle (exported again when it is of an older bundle format than this server reads).
  const demo = path.join(root, 'models', 'demo');
  const { BUNDLE_FORMAT_VERSION } = await import(pathToFileURL(path.join(root, 'dist', 'bundle.js')).href);
  let format;
  try {
    format = JSON.parse(readFileSync(path.join(demo, 'manifest.json'), 'utf8')).format_version;
  } catch {
    format = undefined;
  }
  if (process.env.SAM3_SKIP_DEMO === '1') {
    log('SAM3_SKIP_DEMO=1: no demo bundle');
  } else if (format === BUNDLE_FORMAT_VERSION) {
    log(`demo bundle present: ${demo}`);
  } else {
    if (format !== undefined) log('the demo bundle is from an older exporter: exporting it again');
    const ckpt = path.join(root, 'models', 'demo-checkpoint');
    run(python, [path.join(root, 'scripts', 'make_tiny_checkpoint.py'), '--out', ckpt, '--seed', '0']);
    run(python, [path.join(root, 'scripts', 'export_sam3.py'), '--checkpoint', ckpt, '--out', demo]);
  }
}

function dependencySetup() {
  const mode = process.env.SAM3_BUILD_FROM_SOURCE ?? 'auto';
  if (!['auto', 'always', 'never'].includes(mode)) fail(`SAM3_BUILD_FROM_SOURCE=${mode}: must be auto, always or never`, 2);

  // 1. libtorch.
  let { libtorch, tried } = findLibtorch({ root });
  if (!libtorch && !process.env.LIBTORCH && !process.env.SAM3_PYTHON) {
    log(`no torch found (${tried.join('; ')}): making the package's own venv with torch from pip`);
    try {
      createVenv({ root, run });
    } catch (err) {
      fail(/** @type {Error} */ (err).message);
    }
    ({ libtorch, tried } = findLibtorch({ root }));
  }
  if (!libtorch) fail(`no libtorch: ${tried.join('; ')}. Set LIBTORCH to an unpacked libtorch folder or SAM3_PYTHON to a Python with torch, then run \`npm rebuild sam3-server\`.`);
  log(`libtorch: ${describe(libtorch)}`);

  // 2. The addon: a prebuilt one that fits and loads, else from source.
  const prebuilt = findPrebuilt(root);
  /** @type {{ ok: true } | { ok: false, reason: string }} */
  const fits = prebuilt ? prebuiltFits(prebuilt.meta, libtorch) : { ok: false, reason: 'none is installed' };
  if (mode !== 'always' && prebuilt && fits.ok) {
    writeRecord(root, { mode: 'dependency', addon: { kind: 'prebuilt', path: prebuilt.addon, package: prebuilt.name }, libtorch, at: new Date().toISOString() });
    const loaded = checkLoads();
    if (loaded.ok) {
      log(`addon: prebuilt ${prebuilt.name} (${prebuilt.addon}), loads with torch ${loaded.info.torchVersion}`);
      return;
    }
    log(`the prebuilt addon ${prebuilt.addon} does not load: ${loaded.error}`);
  } else if (mode === 'always') {
    log('SAM3_BUILD_FROM_SOURCE=always: building from source');
  } else {
    log(`no prebuilt addon fits (${prebuilt?.name ?? prebuiltName()}: ${'reason' in fits ? fits.reason : ''})`);
  }
  if (mode === 'never') fail('SAM3_BUILD_FROM_SOURCE=never: not building from source, and no prebuilt addon fits');
  buildOrFail(libtorch, tried);
  writeRecord(root, { mode: 'dependency', addon: { kind: 'source', path: sourceAddon(root) }, libtorch, at: new Date().toISOString() });
  const loaded = checkLoads();
  if (!loaded.ok) fail(`the addon was built but does not load: ${loaded.error}`);
  log(`addon: built from source (${sourceAddon(root)}), loads with torch ${loaded.info.torchVersion}`);
}

if (isRepoCheckout(root)) await developerSetup();
else dependencySetup();
log('done (`npx sam3-server doctor` shows what was found)');
