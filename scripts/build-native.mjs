#!/usr/bin/env node
// Builds the libtorch addon (build/Release/sam3.node) from source with cmake-js. Run directly
// (`npm run build:native`) it finds libtorch as scripts/lib/torch.mjs says ($LIBTORCH, $SAM3_PYTHON,
// the package's .venv, python3 on PATH); scripts/setup.mjs calls buildFromSource with what it found.
// SAM3_BUILD_JOBS sets the parallel compile jobs (2), SAM3_DEBUG_BUILD=1 a debug build.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { findCompiler, findCmake } from './lib/toolchain.mjs';
import { findLibtorch } from './lib/torch.mjs';

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * What a build from source lacks, one line each (empty when nothing is missing).
 * @param {import('./lib/torch.mjs').Libtorch | null} libtorch
 * @param {string[]} tried where libtorch was looked for
 */
export function missingForBuild(libtorch, tried, env = process.env) {
  const missing = [];
  if (!findCmake(env)) missing.push('cmake (3.18 or newer) on PATH: apt-get install cmake, or pip install cmake');
  if (!findCompiler(env)) missing.push('a C++20 compiler: apt-get install g++ (or build-essential), or set CXX');
  if (!libtorch) missing.push(`libtorch: set LIBTORCH to an unpacked libtorch folder, or SAM3_PYTHON to a Python with torch (looked at: ${tried.join('; ')})`);
  return missing;
}

/**
 * Runs cmake-js (resolved from this package's dependencies, wherever npm put them).
 * @param {{ root?: string, libtorch: import('./lib/torch.mjs').Libtorch, env?: NodeJS.ProcessEnv }} options
 * @returns {number} cmake-js's exit status
 */
export function buildFromSource({ root = packageRoot, libtorch, env = process.env }) {
  const require = createRequire(path.join(root, 'package.json'));
  const pkgFile = require.resolve('cmake-js/package.json');
  const bin = JSON.parse(readFileSync(pkgFile, 'utf8')).bin['cmake-js'];
  const cmakeJs = path.join(path.dirname(pkgFile), bin);
  const args = ['compile', '--directory', root, '--out', path.join(root, 'build'), `--CDLIBTORCH=${libtorch.dir}`];
  if (env.SAM3_DEBUG_BUILD === '1') args.push('--debug');
  args.push('--parallel', env.SAM3_BUILD_JOBS ?? '2');
  console.log(`[sam3-server] building the addon from source against libtorch ${libtorch.version} at ${libtorch.dir}`);
  const r = spawnSync(process.execPath, [cmakeJs, ...args], { stdio: 'inherit', cwd: root, env });
  return r.status ?? 1;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { libtorch, tried } = findLibtorch({ root: packageRoot });
  const missing = missingForBuild(libtorch, tried);
  if (missing.length || !libtorch) {
    console.error(`build-native: cannot build the addon; missing:\n  - ${missing.join('\n  - ')}`);
    process.exit(1);
  }
  process.exit(buildFromSource({ libtorch }));
}
