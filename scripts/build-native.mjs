#!/usr/bin/env node
// Builds the libtorch addon with cmake-js. libtorch: $LIBTORCH if set (an unpacked libtorch folder),
// else the torch wheel in the project venv (.venv, made by scripts/setup.mjs).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const python = process.env.SAM3_PYTHON ?? path.join(root, '.venv', 'bin', 'python');

const args = ['compile', '--directory', root, '--out', path.join(root, 'build')];
if (process.env.LIBTORCH) {
  args.push(`--CDLIBTORCH=${process.env.LIBTORCH}`);
} else {
  if (!existsSync(python)) {
    console.error(`build-native: no LIBTORCH folder and no Python at ${python}; run 'npm install' (scripts/setup.mjs) first`);
    process.exit(1);
  }
  const prefix = execFileSync(python, ['-c', 'import torch.utils; print(torch.utils.cmake_prefix_path)'], { encoding: 'utf8' }).trim();
  args.push(`--CDCMAKE_PREFIX_PATH=${prefix}`);
}
if (process.env.SAM3_DEBUG_BUILD === '1') args.push('--debug');
const jobs = process.env.SAM3_BUILD_JOBS ?? '2';
args.push('--parallel', jobs);

const cmakeJs = path.join(root, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const r = spawnSync(process.execPath, [cmakeJs, ...args], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
