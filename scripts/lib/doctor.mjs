// @ts-check
/**
 * `sam3-server doctor`: what this install found and whether the addon loads. Every probe is
 * read-only; the addon is loaded in this process the way the library loads it.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { isRepoCheckout, readRecord, recordPath } from './addon.mjs';
import { readRunpath } from './elf.mjs';
import { exportPython, missingExportTools } from './python-tools.mjs';
import { findCmake, findCompiler } from './toolchain.mjs';
import { probePython } from './torch.mjs';

/** @param {string} root @param {string} file */
const importDist = (root, file) => import(pathToFileURL(path.join(root, 'dist', file)).href);

/**
 * @param {string} root the package root
 * @param {NodeJS.ProcessEnv} [env]
 */
export async function diagnose(root, env = process.env) {
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
  const record = readRecord(root);

  /** @type {Record<string, unknown>} */
  const addon = { found: false };
  let runtime = null;
  if (!existsSync(path.join(root, 'dist', 'addon-loader.js'))) {
    addon.error = `${path.join(root, 'dist')} is not built (npm run build)`;
  } else {
    const { locateAddon, torchLibDir } = await importDist(root, 'addon-loader.js');
    const location = locateAddon(env);
    if (location) {
      Object.assign(addon, { found: true, path: location.path, kind: location.kind, prebuilt: location.prebuilt });
      if (location.package) addon.package = location.package;
      if (location.prebuilt) addon.libtorchLoadedFrom = torchLibDir(env);
      else if (existsSync(location.path)) addon.runpath = readRunpath(location.path);
      try {
        const { runtimeInfo } = await importDist(root, 'runtime.js');
        runtime = runtimeInfo();
        Object.assign(addon, { loads: true, torchVersion: runtime.torchVersion });
      } catch (err) {
        Object.assign(addon, { loads: false, error: /** @type {Error} */ (err).message });
      }
    } else {
      addon.error = 'no addon: no $SAM3_ADDON_PATH, no build/Release/sam3.node, no prebuilt package for this platform';
    }
  }

  const python = exportPython(root, record, env);
  /** @type {Record<string, unknown> | null} */
  let pythonReport = null;
  if (python) {
    const torch = probePython(python.path);
    pythonReport = { path: python.path, from: python.from, torch: torch?.version ?? null, torchCuda: torch?.cuda ?? null, missingForExport: missingExportTools(python.path) };
  }

  const demo = path.join(root, 'models', 'demo');
  let demoFormat = null;
  try {
    demoFormat = JSON.parse(readFileSync(path.join(demo, 'manifest.json'), 'utf8')).format_version;
  } catch {
    // absent
  }
  let bundleFormat = null;
  try {
    bundleFormat = (await importDist(root, 'bundle.js')).BUNDLE_FORMAT_VERSION;
  } catch {
    // dist missing: reported under addon
  }

  return {
    node: { version: process.version, platform: process.platform, arch: process.arch, napi: Number(process.versions.napi) },
    package: { name: pkg.name, version: pkg.version, root, mode: isRepoCheckout(root) ? 'repo' : 'dependency' },
    install: record ? { record: recordPath(root), addon: record.addon.kind, libtorch: record.libtorch } : null,
    addon,
    cuda: runtime ? { available: runtime.cudaAvailable, devices: runtime.cudaDeviceCount } : null,
    python: pythonReport,
    cmake: findCmake(env),
    compiler: findCompiler(env),
    demoBundle: { path: demo, present: demoFormat !== null, formatVersion: demoFormat, current: demoFormat !== null && demoFormat === bundleFormat },
  };
}

/**
 * The report as aligned lines for a person.
 * @param {Awaited<ReturnType<typeof diagnose>>} r
 */
export function formatReport(r) {
  /** @type {[string, string][]} */
  const rows = [];
  const a = /** @type {Record<string, any>} */ (r.addon);
  rows.push(['node', `${r.node.version} ${r.node.platform}-${r.node.arch}, Node-API ${r.node.napi}`]);
  rows.push(['package', `${r.package.name} ${r.package.version} at ${r.package.root} (${r.package.mode === 'repo' ? "a developer's clone" : 'installed as a dependency'})`]);
  if (!a.found) rows.push(['addon', `MISSING: ${a.error}`]);
  else {
    const kind = { env: '$SAM3_ADDON_PATH', source: 'built from source', prebuilt: `prebuilt (${a.package})` }[/** @type {'env'|'source'|'prebuilt'} */ (a.kind)];
    rows.push(['addon', `${kind}: ${a.path}`]);
    rows.push(['addon loads', a.loads ? `yes, torch ${a.torchVersion}` : `NO: ${a.error}`]);
    if (a.prebuilt) rows.push(['libtorch (loaded first)', a.libtorchLoadedFrom ? `${a.libtorchLoadedFrom.dir} (from ${a.libtorchLoadedFrom.from})` : 'none known: set LIBTORCH']);
    else if (a.runpath) rows.push(['libtorch (RPATH)', a.runpath]);
  }
  const lt = r.install?.libtorch;
  rows.push(['install found', lt ? `torch ${lt.version}${lt.cuda ? ` CUDA ${lt.cuda}` : ' CPU'} at ${lt.dir} (${lt.source}${lt.python ? `: ${lt.python}` : ''})` : 'no install record (build/install.json)']);
  rows.push(['CUDA', r.cuda ? (r.cuda.available ? `available, ${r.cuda.devices} device(s)` : 'not available (CPU only)') : 'unknown (the addon does not load)']);
  const p = r.python;
  rows.push(['python', p ? `${p.path} (${p.from}): ${p.torch ? `torch ${p.torch}${p.torchCuda ? ` CUDA ${p.torchCuda}` : ''}` : 'no torch'}` : 'none found']);
  if (p) rows.push(['export tools', /** @type {string[]} */ (p.missingForExport).length ? `missing ${/** @type {string[]} */ (p.missingForExport).join(', ')} (sam3-server export installs them into the package venv, or says how)` : 'ready']);
  rows.push(['cmake', r.cmake ? `${r.cmake.version} (${r.cmake.path})` : 'not found (needed only to build from source)']);
  rows.push(['C++ compiler', r.compiler ? `${r.compiler.version} (${r.compiler.path})` : 'not found (needed only to build from source)']);
  rows.push(['demo bundle', r.demoBundle.present ? `${r.demoBundle.path} (format ${r.demoBundle.formatVersion}${r.demoBundle.current ? '' : ', OLD: export it again'})` : `none at ${r.demoBundle.path}`]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
