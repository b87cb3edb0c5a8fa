#!/usr/bin/env node
// The sam3-server command (package.json "bin"). `serve` runs the server in this very process, so
// the signals a supervisor sends reach it (run it as node_modules/.bin/sam3-server serve, not
// through npx or npm, which put a shell and npm in between).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { isRepoCheckout, readRecord } from '../scripts/lib/addon.mjs';
import { diagnose, formatReport } from '../scripts/lib/doctor.mjs';
import { exportPython, exportToolsInstall, missingExportTools } from '../scripts/lib/python-tools.mjs';
import { serveEnv } from '../scripts/lib/serve-env.mjs';
import { venvPython } from '../scripts/lib/torch.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const version = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')).version;

const HELP = `sam3-server ${version}: SAM 3 segmentation server and library on libtorch

Usage: sam3-server <command> [options]

Commands:
  serve            Start the HTTP and WebSocket server. Configuration comes from the environment
                   and ./.env (SERVER_PORT, SAM3_CHECKPOINT, DEVICES, ...; see the README); relative
                   paths are relative to the current directory.
  export [args]    Export a Hugging Face SAM 3 checkpoint to a model bundle with the Python the
                   install found (scripts/export_sam3.py; 'sam3-server export --help' lists its
                   options, e.g. --checkpoint facebook/sam3 --out models/sam3 --dtype bfloat16).
  doctor [--json]  Report what this install found: Node, the addon (prebuilt or built from
                   source) and whether it loads, libtorch, Python and torch, cmake, the C++
                   compiler, CUDA, the demo bundle. Exits 1 when the addon does not load.

Options:
  -h, --help       This help.
  -v, --version    The package version.
`;

/** @param {string} msg @returns {never} */
function fail(msg, status = 1) {
  console.error(`sam3-server: ${msg}`);
  process.exit(status);
}

async function serve() {
  const main = path.join(root, 'dist', 'server', 'main.js');
  if (!existsSync(main)) fail(`${main} is missing: run 'npm run build' in ${root}`);
  const record = readRecord(root);
  const python = record?.libtorch?.python ?? (existsSync(venvPython(root)) ? venvPython(root) : null);
  Object.assign(process.env, serveEnv({ env: process.env, cwd: process.cwd(), dependency: !isRepoCheckout(root), python }));
  await import(pathToFileURL(main).href);
}

/**
 * Runs a child with the terminal, passing on SIGINT/SIGTERM, and resolves with its exit status.
 * @param {string} cmd @param {string[]} args @returns {Promise<number>}
 */
function runChild(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: 'inherit' });
    const forward = (/** @type {NodeJS.Signals} */ signal) => child.kill(signal);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('error', (err) => fail(`cannot run ${cmd}: ${err.message}`));
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
  });
}

/** @param {string[]} args */
async function exportBundle(args) {
  const python = exportPython(root, readRecord(root));
  if (!python) fail('no Python found: install Python 3 with torch, or set SAM3_PYTHON');
  const missing = missingExportTools(python.path);
  if (missing.length) {
    const steps = exportToolsInstall(root, python.path);
    if (python.path !== venvPython(root)) {
      fail(`${python.path} (${python.from}) lacks the exporter's modules: ${missing.join(', ')}. Install them with:\n  ${steps.map(([c, a]) => [c, ...a].join(' ')).join('\n  ')}\nor set SAM3_PYTHON to a Python that has them.`);
    }
    console.error(`sam3-server: installing the export tools into the package's venv (${missing.join(', ')} missing; once)`);
    for (const [cmd, a] of steps) {
      const status = await runChild(cmd, a);
      if (status !== 0) fail(`${cmd} ${a.join(' ')} failed (exit ${status})`, status);
    }
  }
  process.exit(await runChild(python.path, [path.join(root, 'scripts', 'export_sam3.py'), ...args]));
}

/** @param {string[]} args */
async function doctor(args) {
  const report = await diagnose(root);
  console.log(args.includes('--json') ? JSON.stringify(report, null, 2) : formatReport(report));
  process.exit(report.addon.loads ? 0 : 1);
}

const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case 'serve':
    if (rest.includes('--help') || rest.includes('-h')) console.log(HELP);
    else await serve();
    break;
  case 'export':
    await exportBundle(rest);
    break;
  case 'doctor':
    await doctor(rest);
    break;
  case undefined:
  case '-h':
  case '--help':
  case 'help':
    console.log(HELP);
    break;
  case '-v':
  case '--version':
    console.log(version);
    break;
  default:
    console.error(HELP);
    fail(`unknown command '${command}'`, 2);
}
