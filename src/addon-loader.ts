/**
 * Which sam3.node to load, and what must be loaded before it. The first that exists:
 *   1. $SAM3_ADDON_PATH;
 *   2. build/Release/sam3.node, built from source on this machine (its RPATH names the libtorch it
 *      was linked against, so it needs nothing else);
 *   3. the prebuilt package for this platform (@sam3-server/linux-x64-cpu), an optional dependency.
 *
 * A prebuilt addon (one with prebuilt.json next to it, see scripts/make-prebuilt.mjs) cannot know
 * where libtorch is on this machine: it names libc10.so, libtorch_cpu.so and libtorch.so by soname
 * only (RUNPATH $ORIGIN). LD_LIBRARY_PATH is read once when the process starts, so setting it here
 * would be too late. Instead those libraries are loaded first, by absolute path, from the libtorch
 * the install found (build/install.json; $LIBTORCH wins when set): the dynamic linker then resolves
 * the addon's needs by soname against the libraries already loaded. They are loaded with
 * RTLD_NODELETE, because Node's dlopen, finding no Node module in them, closes its handle at once
 * (without it libtorch.so is unloaded again and the addon fails with "libtorch.so: cannot open").
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ErrorCode, Sam3Error } from './errors.js';

export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** glibc's RTLD_NODELETE (Node's os.constants.dlopen does not list it). */
const RTLD_NODELETE = 0x1000;
/** What a prebuilt addon needs, in dependency order. */
const TORCH_LIBS = ['libc10.so', 'libtorch_cpu.so', 'libtorch.so'];

export interface AddonLocation {
  /** The sam3.node file. */
  path: string;
  /** env: $SAM3_ADDON_PATH; source: build/Release; prebuilt: the platform package. */
  kind: 'env' | 'source' | 'prebuilt';
  /** Whether it is a prebuilt addon that needs libtorch loaded first. */
  prebuilt: boolean;
  /** The prebuilt package's name (kind prebuilt). */
  package?: string;
}

interface PrebuiltMeta {
  torchVersion: string;
  backend: string;
}

export function prebuiltPackageName(platform: string = process.platform, arch: string = process.arch): string {
  return `@sam3-server/${platform}-${arch}-cpu`;
}

const isPrebuilt = (file: string) => existsSync(path.join(path.dirname(file), 'prebuilt.json'));

/** The addon this process would load, or null when there is none. */
export function locateAddon(env: NodeJS.ProcessEnv = process.env): AddonLocation | null {
  if (env.SAM3_ADDON_PATH) {
    const file = path.resolve(env.SAM3_ADDON_PATH);
    return { path: file, kind: 'env', prebuilt: isPrebuilt(file) };
  }
  const source = path.join(packageRoot, 'build', 'Release', 'sam3.node');
  if (existsSync(source)) return { path: source, kind: 'source', prebuilt: false };
  const name = prebuiltPackageName();
  try {
    const dir = path.dirname(createRequire(path.join(packageRoot, 'package.json')).resolve(`${name}/package.json`));
    const file = path.join(dir, 'sam3.node');
    if (existsSync(file)) return { path: file, kind: 'prebuilt', prebuilt: isPrebuilt(file), package: name };
  } catch {
    // not installed (an optional dependency npm skipped, or another platform)
  }
  return null;
}

/** The libtorch lib folder a prebuilt addon is given: $LIBTORCH/lib, else the install's (build/install.json). */
export function torchLibDir(env: NodeJS.ProcessEnv = process.env): { dir: string; from: string } | null {
  if (env.LIBTORCH) return { dir: path.join(path.resolve(env.LIBTORCH), 'lib'), from: '$LIBTORCH' };
  try {
    const record = JSON.parse(readFileSync(path.join(packageRoot, 'build', 'install.json'), 'utf8')) as { libtorch?: { libDir?: string } };
    if (record.libtorch?.libDir) return { dir: record.libtorch.libDir, from: path.join(packageRoot, 'build', 'install.json') };
  } catch {
    // no record: not installed through scripts/setup.mjs
  }
  return null;
}

function preloadTorch(location: AddonLocation): void {
  const lib = torchLibDir();
  let want = 'the libtorch it was built against';
  try {
    want = `torch ${(JSON.parse(readFileSync(path.join(path.dirname(location.path), 'prebuilt.json'), 'utf8')) as PrebuiltMeta).torchVersion}`;
  } catch {
    // keep the generic wording
  }
  if (!lib) {
    throw new Sam3Error(
      ErrorCode.Addon,
      `the prebuilt addon ${location.path} needs ${want}, and no libtorch is known: set LIBTORCH to a libtorch folder, or run 'npm rebuild sam3-server' so the install finds one`,
    );
  }
  const flags = os.constants.dlopen.RTLD_NOW | os.constants.dlopen.RTLD_GLOBAL | RTLD_NODELETE;
  for (const name of TORCH_LIBS) {
    const file = path.join(lib.dir, name);
    if (!existsSync(file)) throw new Sam3Error(ErrorCode.Addon, `the prebuilt addon needs ${want}, but ${file} is missing (libtorch from ${lib.from})`);
    try {
      process.dlopen({ exports: {} }, file, flags);
    } catch (err) {
      // Expected: the library loads, then Node finds no module in it. Anything else is a real failure.
      if (!/did not self-register/.test((err as Error).message)) {
        throw new Sam3Error(ErrorCode.Addon, `cannot load ${file} for the prebuilt addon: ${(err as Error).message}`, undefined, { cause: err });
      }
    }
  }
}

/** Loads the addon at `location` (for a prebuilt one, libtorch first). */
export function loadAddon<T>(location: AddonLocation): T {
  if (location.prebuilt) preloadTorch(location);
  try {
    return createRequire(import.meta.url)(location.path) as T;
  } catch (err) {
    const hint = location.prebuilt ? ` (a prebuilt addon for torch of one version; set LIBTORCH or rebuild from source: SAM3_BUILD_FROM_SOURCE=always npm rebuild sam3-server)` : '';
    throw new Sam3Error(ErrorCode.Addon, `cannot load the native addon ${location.path}: ${(err as Error).message}${hint}`, undefined, { cause: err });
  }
}
