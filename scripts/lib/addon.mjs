// @ts-check
/**
 * Where the addon comes from: a prebuilt package (an optional dependency such as
 * @sam3-server/linux-x64-cpu, holding sam3.node and prebuilt.json) or a build from source in
 * build/Release; and the install record (build/install.json) that says which one the install
 * chose and which libtorch it found. src/addon-loader.ts reads the same two files at load time.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { baseVersion } from './torch.mjs';

/** The marker file a prebuilt package ships next to sam3.node. */
export const PREBUILT_META = 'prebuilt.json';

/**
 * @typedef {object} PrebuiltMeta
 * @property {string} platform process.platform it was built on
 * @property {string} arch process.arch
 * @property {'cpu'} backend
 * @property {string} torchVersion the libtorch it was linked against, without a local label (2.13.0)
 * @property {number} napiVersion
 */

/**
 * @typedef {object} InstallRecord
 * @property {'repo' | 'dependency'} mode a developer's clone, or installed into another project
 * @property {{ kind: 'prebuilt' | 'source', path: string, package?: string }} addon
 * @property {import('./torch.mjs').Libtorch} libtorch
 * @property {string} at ISO time of the install
 */

/** @param {string} [platform] @param {string} [arch] */
export const prebuiltName = (platform = process.platform, arch = process.arch) => `@sam3-server/${platform}-${arch}-cpu`;

export const sourceAddon = (/** @type {string} */ root) => path.join(root, 'build', 'Release', 'sam3.node');
export const recordPath = (/** @type {string} */ root) => path.join(root, 'build', 'install.json');

/**
 * The prebuilt package for this platform, when it is installed next to this package.
 * @param {string} root
 * @returns {{ name: string, dir: string, addon: string, meta: PrebuiltMeta } | null}
 */
export function findPrebuilt(root) {
  const name = prebuiltName();
  let dir;
  try {
    dir = path.dirname(createRequire(path.join(root, 'package.json')).resolve(`${name}/package.json`));
  } catch {
    return null;
  }
  const addon = path.join(dir, 'sam3.node');
  const metaFile = path.join(dir, PREBUILT_META);
  if (!existsSync(addon) || !existsSync(metaFile)) return null;
  return { name, dir, addon, meta: JSON.parse(readFileSync(metaFile, 'utf8')) };
}

/**
 * Whether a prebuilt addon can run with this libtorch. libtorch's C++ API has no stable ABI, so the
 * torch version must be the one it was linked against; a CUDA torch gets a build from source.
 * @param {PrebuiltMeta} meta
 * @param {import('./torch.mjs').Libtorch} libtorch
 * @returns {{ ok: true } | { ok: false, reason: string }}
 */
export function prebuiltFits(meta, libtorch) {
  if (meta.platform !== process.platform || meta.arch !== process.arch) return { ok: false, reason: `it is for ${meta.platform}-${meta.arch}` };
  if (meta.napiVersion > Number(process.versions.napi)) return { ok: false, reason: `it needs Node-API ${meta.napiVersion}; this Node has ${process.versions.napi}` };
  if (baseVersion(libtorch.version) !== meta.torchVersion) return { ok: false, reason: `it is linked against torch ${meta.torchVersion}, the libtorch found is ${libtorch.version}` };
  if (libtorch.cuda) return { ok: false, reason: `it is the CPU build and the libtorch found is built for CUDA ${libtorch.cuda} (build from source to use the GPU)` };
  return { ok: true };
}

/** @param {string} root @returns {InstallRecord | null} */
export function readRecord(root) {
  try {
    return JSON.parse(readFileSync(recordPath(root), 'utf8'));
  } catch {
    return null;
  }
}

/** @param {string} root @param {InstallRecord} record */
export function writeRecord(root, record) {
  mkdirSync(path.dirname(recordPath(root)), { recursive: true });
  writeFileSync(recordPath(root), `${JSON.stringify(record, null, 2)}\n`);
}

/**
 * A developer's clone (sources and tsconfig present, not inside node_modules) rather than an
 * installed package (which ships dist/ and no sources).
 * @param {string} root
 */
export function isRepoCheckout(root) {
  return !root.split(path.sep).includes('node_modules') && existsSync(path.join(root, 'tsconfig.json')) && existsSync(path.join(root, 'src'));
}
