// @ts-check
/**
 * What a build from source needs besides libtorch: cmake on PATH and a C++20 compiler. Found
 * without building anything, so a missing one is named before cmake-js starts.
 */
import { spawnSync } from 'node:child_process';

import { which } from './torch.mjs';

/**
 * First line of `<cmd> --version`, or null when it cannot be run.
 * @param {string} cmd
 */
function versionLine(cmd) {
  const r = spawnSync(cmd, ['--version'], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) return null;
  return (r.stdout || r.stderr).split('\n')[0]?.trim() || null;
}

/**
 * @typedef {{ path: string, version: string }} Tool
 */

/** @param {NodeJS.ProcessEnv} [env] @returns {Tool | null} */
export function findCmake(env = process.env) {
  const p = which('cmake', env);
  const version = p && versionLine(p);
  return p && version ? { path: p, version } : null;
}

/** The compiler CMake would pick: $CXX, else c++, g++ or clang++ on PATH. @param {NodeJS.ProcessEnv} [env] @returns {Tool | null} */
export function findCompiler(env = process.env) {
  const candidates = env.CXX ? [env.CXX.split(/\s+/)[0] ?? env.CXX] : ['c++', 'g++', 'clang++'];
  for (const c of candidates) {
    const p = which(c, env);
    const version = p && versionLine(p);
    if (p && version) return { path: p, version };
  }
  return null;
}
