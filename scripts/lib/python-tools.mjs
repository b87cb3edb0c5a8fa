// @ts-check
/**
 * The Python that runs the exporter (scripts/export_sam3.py) and its tools (scripts/requirements.txt
 * plus open_clip_torch for its CLIP vocabulary file only). Python is a build tool here: it is never
 * in the request path.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { venvPython, which } from './torch.mjs';

/** Installed with --no-deps: its dependencies would pull a torchvision that does not work with this torch. */
export const OPEN_CLIP = 'open_clip_torch==3.3.0';

/**
 * The Python for exports: $SAM3_PYTHON, else the one the install found torch through, else the
 * package's venv, else python3 on PATH.
 * @param {string} root
 * @param {import('./addon.mjs').InstallRecord | null} record
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {{ path: string, from: string } | null}
 */
export function exportPython(root, record, env = process.env) {
  if (env.SAM3_PYTHON) return { path: env.SAM3_PYTHON, from: '$SAM3_PYTHON' };
  if (record?.libtorch?.python) return { path: record.libtorch.python, from: 'the Python the install found torch through' };
  if (existsSync(venvPython(root))) return { path: venvPython(root), from: "the package's venv" };
  const onPath = which('python3', env);
  return onPath ? { path: onPath, from: 'python3 on PATH' } : null;
}

/**
 * Which of the exporter's modules a Python lacks (empty: it can export).
 * @param {string} python
 * @returns {string[]}
 */
export function missingExportTools(python) {
  const code = [
    'import importlib.util, json',
    'mods = ["torch", "transformers", "safetensors", "tokenizers", "numpy", "PIL", "open_clip"]',
    'print(json.dumps([m for m in mods if importlib.util.find_spec(m) is None]))',
  ].join('\n');
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) return ['python itself (it does not run)'];
  return JSON.parse(r.stdout.trim().split('\n').pop() ?? '[]');
}

/**
 * The pip commands that install the export tools into `python`.
 * @param {string} root
 * @param {string} python
 * @returns {[string, string[]][]}
 */
export function exportToolsInstall(root, python) {
  return [
    [python, ['-m', 'pip', 'install', '--retries', '0', '-r', path.join(root, 'scripts', 'requirements.txt')]],
    [python, ['-m', 'pip', 'install', '--retries', '0', '--no-deps', OPEN_CLIP]],
  ];
}
