// @ts-check
/**
 * The environment `sam3-server serve` hands the server. The server resolves relative paths against
 * the package root, which for an installed package is inside node_modules; a command run in a
 * project should read and write that project's files. So the CLI loads the project's .env, makes the
 * relative path settings absolute against the current directory, and, where the package is a
 * dependency, points the writable defaults there too.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { parse } from 'dotenv';

/** Path settings and the server's defaults for them (src/server/core/config.ts). */
const PATH_KEYS = { SAM3_EXPORT_DIR: '.cache/bundles', MEDIA_ROOT: './media', SAM3_PYTHON: undefined };

/**
 * Returns the variables to set (the environment wins over .env, as in the server).
 * @param {{ env: NodeJS.ProcessEnv, cwd: string, dependency: boolean, python?: string | null }} options
 * @returns {Record<string, string>}
 */
export function serveEnv({ env, cwd, dependency, python }) {
  /** @type {Record<string, string | undefined>} */
  const merged = {};
  const envFile = path.join(cwd, '.env');
  if (existsSync(envFile)) Object.assign(merged, parse(readFileSync(envFile)));
  for (const [k, v] of Object.entries(env)) if (v !== undefined) merged[k] = v;

  /** @type {Record<string, string>} */
  const out = {};
  for (const [key, fallback] of Object.entries(PATH_KEYS)) {
    const value = merged[key]?.trim();
    if (value) out[key] = path.resolve(cwd, value);
    else if (dependency && fallback) out[key] = path.resolve(cwd, fallback);
  }
  // A checkpoint path that exists here is this project's; anything else (a hub id such as
  // facebook/sam3, or the default demo bundle) is left for the server to interpret.
  const checkpoint = merged.SAM3_CHECKPOINT?.trim();
  if (checkpoint && !path.isAbsolute(checkpoint) && existsSync(path.resolve(cwd, checkpoint))) out.SAM3_CHECKPOINT = path.resolve(cwd, checkpoint);
  if (!out.SAM3_PYTHON && python) out.SAM3_PYTHON = python;
  return out;
}
