// @ts-check
/**
 * Finding libtorch for the addon, at install time (scripts/setup.mjs) and for `sam3-server doctor`.
 * A libtorch is a folder with lib/libtorch.so and share/cmake/Torch: an unpacked libtorch download,
 * or the `torch` folder of a torch wheel (what `import torch; torch.__file__` lives in).
 *
 * Where it comes from, in order (the first that has one wins):
 *   1. $LIBTORCH, a libtorch folder;
 *   2. $SAM3_PYTHON, a Python whose `import torch` works;
 *   3. the package's own venv (.venv, made by an earlier install);
 *   4. `python3` or `python` on PATH with torch installed;
 *   5. (install only) a new .venv in the package with torch from pip (createVenv).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * @typedef {object} Libtorch
 * @property {'LIBTORCH' | 'SAM3_PYTHON' | 'venv' | 'python'} source where it was found
 * @property {string} dir the libtorch folder (lib/, include/, share/cmake/Torch)
 * @property {string} libDir dir/lib: the shared libraries the addon needs at run time
 * @property {string} version torch's version, e.g. 2.13.0+cpu
 * @property {string | null} cuda the CUDA version it was built for, null for a CPU build
 * @property {string | null} python the Python it was found through (null for LIBTORCH)
 */

const PROBE = [
  'import json, os, torch',
  'print(json.dumps({"dir": os.path.dirname(torch.__file__), "version": torch.__version__, "cuda": torch.version.cuda}))',
].join('\n');

/** The part of a torch version before a local label: 2.13.0+cpu -> 2.13.0. @param {string} v */
export const baseVersion = (v) => v.split('+')[0] ?? v;

/**
 * Describes a libtorch folder, or says why it is not one.
 * @param {string} dir
 * @returns {{ ok: true, version: string, cuda: string | null } | { ok: false, reason: string }}
 */
export function inspectLibtorch(dir) {
  if (!existsSync(path.join(dir, 'lib', 'libtorch.so')) || !existsSync(path.join(dir, 'share', 'cmake', 'Torch', 'TorchConfig.cmake'))) {
    return { ok: false, reason: `${dir} is not a libtorch folder (it needs lib/libtorch.so and share/cmake/Torch/TorchConfig.cmake)` };
  }
  let version = 'unknown';
  // A libtorch download has build-version; a wheel's torch folder has version.py.
  const buildVersion = path.join(dir, 'build-version');
  const versionPy = path.join(dir, 'version.py');
  if (existsSync(buildVersion)) version = readFileSync(buildVersion, 'utf8').trim();
  else if (existsSync(versionPy)) version = /__version__\s*=\s*['"]([^'"]+)['"]/.exec(readFileSync(versionPy, 'utf8'))?.[1] ?? version;
  const cudaLib = existsSync(path.join(dir, 'lib', 'libtorch_cuda.so'));
  let cuda = null;
  if (cudaLib) {
    cuda = existsSync(versionPy) ? (/^cuda[^=]*=\s*['"]([^'"]+)['"]/m.exec(readFileSync(versionPy, 'utf8'))?.[1] ?? 'unknown') : 'unknown';
  }
  return { ok: true, version, cuda };
}

/**
 * Asks a Python for its torch. Null when the Python cannot be run or has no torch.
 * @param {string} python
 * @returns {{ dir: string, version: string, cuda: string | null } | null}
 */
export function probePython(python) {
  const r = spawnSync(python, ['-c', PROBE], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, PYTHONWARNINGS: 'ignore' } });
  if (r.status !== 0 || !r.stdout) return null;
  try {
    const line = r.stdout.trim().split('\n').pop() ?? '';
    return JSON.parse(line);
  } catch {
    return null;
  }
}

/**
 * An executable on PATH (no shell), or null.
 * @param {string} name
 * @param {NodeJS.ProcessEnv} [env]
 */
export function which(name, env = process.env) {
  if (name.includes('/')) return existsSync(name) ? name : null;
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, name);
    if (existsSync(p)) return p;
  }
  return null;
}

/** The package's own venv Python. @param {string} root */
export const venvPython = (root) => path.join(root, '.venv', 'bin', 'python');

/**
 * The first libtorch found (see the file comment), with every place looked at and why it did not
 * fit, so a failure can name them.
 * @param {{ root: string, env?: NodeJS.ProcessEnv }} options
 * @returns {{ libtorch: Libtorch | null, tried: string[] }}
 */
export function findLibtorch({ root, env = process.env }) {
  /** @type {string[]} */
  const tried = [];
  if (env.LIBTORCH) {
    const dir = path.resolve(env.LIBTORCH);
    const info = inspectLibtorch(dir);
    if (info.ok) return { libtorch: { source: 'LIBTORCH', dir, libDir: path.join(dir, 'lib'), version: info.version, cuda: info.cuda, python: null }, tried };
    // An explicit LIBTORCH that is wrong is an error, not something to look past.
    tried.push(`LIBTORCH: ${info.reason}`);
    return { libtorch: null, tried };
  }
  /** @type {[Libtorch['source'], string | undefined][]} */
  const pythons = [
    ['SAM3_PYTHON', env.SAM3_PYTHON],
    ['venv', existsSync(venvPython(root)) ? venvPython(root) : undefined],
    ['python', which('python3', env) ?? undefined],
    ['python', which('python', env) ?? undefined],
  ];
  for (const [source, python] of pythons) {
    if (!python) continue;
    const torch = probePython(python);
    if (!torch) {
      tried.push(`${python}: no 'import torch'`);
      if (source === 'SAM3_PYTHON') return { libtorch: null, tried };
      continue;
    }
    const info = inspectLibtorch(torch.dir);
    if (!info.ok) {
      tried.push(`${python}: ${info.reason}`);
      continue;
    }
    return { libtorch: { source, dir: torch.dir, libDir: path.join(torch.dir, 'lib'), version: torch.version, cuda: torch.cuda, python }, tried };
  }
  if (!tried.length) tried.push('no LIBTORCH, no SAM3_PYTHON, no .venv, no python3 or python on PATH');
  return { libtorch: null, tried };
}

/**
 * The torch version the export tools pin (scripts/requirements.txt).
 * @param {string} root
 */
export function pinnedTorch(root) {
  const text = readFileSync(path.join(root, 'scripts', 'requirements.txt'), 'utf8');
  return /^torch==(\S+)/m.exec(text)?.[1] ?? null;
}

/**
 * Makes the package's own venv with the pinned torch from pip (pip's own configuration decides
 * the index: a find-links folder of local wheels works offline; SAM3_TORCH_PIP_ARGS adds arguments,
 * e.g. "--index-url https://download.pytorch.org/whl/cpu" for the CPU wheel).
 * @param {{ root: string, env?: NodeJS.ProcessEnv, run: (cmd: string, args: string[]) => void }} options
 * @returns {string} the venv's Python
 */
export function createVenv({ root, env = process.env, run }) {
  const python = venvPython(root);
  const bootstrap = env.SAM3_PYTHON_BOOTSTRAP ?? which('python3', env) ?? which('python', env);
  if (!bootstrap) throw new Error('no python3 on PATH to make a venv with (install Python 3.10+, or set LIBTORCH or SAM3_PYTHON)');
  if (!existsSync(python)) run(bootstrap, ['-m', 'venv', path.join(root, '.venv')]);
  const pin = pinnedTorch(root);
  const extra = (env.SAM3_TORCH_PIP_ARGS ?? '').split(/\s+/).filter(Boolean);
  run(python, ['-m', 'pip', 'install', '--retries', '0', ...extra, pin ? `torch==${pin}` : 'torch']);
  return python;
}
