/**
 * SAM3_CHECKPOINT names what to serve: a model bundle folder (manifest.json), or a Hugging Face
 * checkpoint (a folder with config.json, or a hub id such as facebook/sam3) that is exported once
 * with scripts/export_sam3.py into SAM3_EXPORT_DIR and reused on later starts. The export runs in
 * a child process whose output goes to the log line by line, so a long first start shows progress.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';

import type { Logger } from 'pino';

import type { ServerConfig } from './config.js';

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

export type CheckpointKind = { kind: 'bundle'; dir: string } | { kind: 'hf-folder'; dir: string } | { kind: 'hub'; id: string };

export function classifyCheckpoint(checkpoint: string, root: string): CheckpointKind {
  const dir = path.resolve(root, checkpoint);
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new CheckpointError(`SAM3_CHECKPOINT=${checkpoint}: ${dir} is a file; name a model bundle folder (manifest.json) or a Hugging Face checkpoint folder (config.json)`);
    if (existsSync(path.join(dir, 'manifest.json'))) return { kind: 'bundle', dir };
    if (existsSync(path.join(dir, 'config.json'))) return { kind: 'hf-folder', dir };
    throw new CheckpointError(`SAM3_CHECKPOINT=${checkpoint}: ${dir} has neither manifest.json (a model bundle from scripts/export_sam3.py) nor config.json (a Hugging Face checkpoint)`);
  }
  if (!path.isAbsolute(checkpoint) && !checkpoint.startsWith('.') && HUB_ID.test(checkpoint) && checkpoint !== 'models/demo') return { kind: 'hub', id: checkpoint };
  const hint = checkpoint === 'models/demo' ? " (the demo bundle is made by 'npm install'; run it again, or set SAM3_CHECKPOINT)" : '';
  throw new CheckpointError(`SAM3_CHECKPOINT=${checkpoint}: ${dir} does not exist${hint}; name a model bundle folder, a Hugging Face checkpoint folder, or a hub id such as facebook/sam3`);
}

/** A key that changes when the checkpoint's files or the export settings change. */
function exportKey(source: CheckpointKind, device: string, dtype: string): string {
  const h = createHash('sha256').update(JSON.stringify({ device, dtype }));
  if (source.kind === 'hf-folder') {
    h.update(source.dir);
    for (const f of readdirSync(source.dir).sort()) {
      const st = statSync(path.join(source.dir, f));
      h.update(`${f}:${st.size}:${st.mtimeMs}`);
      if (f === 'config.json') h.update(readFileSync(path.join(source.dir, f)));
    }
  } else if (source.kind === 'hub') {
    h.update(source.id);
  }
  return h.digest('hex').slice(0, 12);
}

/** The bundle folder to load, exporting the checkpoint first when needed. */
export async function resolveBundle(config: ServerConfig, devices: readonly string[], log: Logger): Promise<string> {
  const source = classifyCheckpoint(config.checkpoint, config.root);
  if (source.kind === 'bundle') return source.dir;

  // TorchScript bakes the trace device in: trace on the device that will serve.
  const device = devices[0] ?? 'cpu';
  const dtype = config.exportDtype ?? (device.startsWith('cuda') ? 'bfloat16' : 'float32');
  const name = (source.kind === 'hub' ? source.id : path.basename(source.dir)).replace(/[^\w.-]+/g, '_');
  const out = path.join(config.exportDir, `${name}-${device.replace(':', '')}-${dtype}-${exportKey(source, device, dtype)}`);
  if (existsSync(path.join(out, 'manifest.json'))) {
    log.info({ checkpoint: config.checkpoint, bundle: out }, 'using the bundle exported from this checkpoint on an earlier start');
    return out;
  }
  await mkdir(config.exportDir, { recursive: true });
  const tmp = `${out}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  const args = [path.join(config.root, 'scripts', 'export_sam3.py'), '--checkpoint', source.kind === 'hub' ? source.id : source.dir, '--out', tmp, '--device', device, '--dtype', dtype];
  log.info({ checkpoint: config.checkpoint, bundle: out, python: config.python, args }, 'exporting the checkpoint to a model bundle (once; later starts reuse it)');
  const started = performance.now();
  await runExporter(config.python, args, config.root, log);
  try {
    await rename(tmp, out);
  } catch (err) {
    // Another server exported the same checkpoint meanwhile: use theirs.
    if (!existsSync(path.join(out, 'manifest.json'))) throw err;
    await rm(tmp, { recursive: true, force: true });
  }
  log.info({ bundle: out, seconds: Math.round((performance.now() - started) / 100) / 10 }, 'export finished');
  return out;
}

function runExporter(python: string, args: string[], cwd: string, log: Logger): Promise<void> {
  if (!existsSync(python)) {
    return Promise.reject(new CheckpointError(`exporting needs the project's Python tools, but ${python} does not exist; run 'npm install' (or set SAM3_PYTHON), or point SAM3_CHECKPOINT at an exported bundle`));
  }
  return new Promise((resolve, reject) => {
    const child = spawn(python, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const follow = (stream: NodeJS.ReadableStream, level: 'info' | 'warn') => {
      createInterface({ input: stream }).on('line', (line) => {
        if (!line.trim()) return;
        tail.push(line);
        if (tail.length > 20) tail.shift();
        log[level]({ exporter: true }, line);
      });
    };
    follow(child.stdout, 'info');
    follow(child.stderr, 'info');
    child.on('error', (err) => reject(new CheckpointError(`cannot run the exporter (${python}): ${err.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new CheckpointError(`exporting ${args[2]} failed (exit ${code ?? signal}): ${tail.slice(-5).join(' | ') || 'no output'}`));
    });
  });
}
