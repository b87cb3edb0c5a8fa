/**
 * The server as a separate process, the way a supervisor runs it: `node src/server/main.ts` (through
 * tsx), or `npm start` (which runs the compiled dist/), with its JSON log lines parsed from stdout.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';

import { fixture, root } from './helpers.js';

export interface LogEntry {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface ServerProcess {
  child: ChildProcess;
  /** Parsed JSON log lines from stdout, as they arrive. */
  logs: LogEntry[];
  /** stdout lines that are not JSON (npm's banner, anything else). */
  other: string[];
  stderr(): string;
  /** The exit code (null: killed by a signal) once the process has exited and its output is read. */
  exited: Promise<number | null>;
  /** The port from the 'listening' line; rejects if the process exits first. */
  port: Promise<number>;
  /** Resolves with the first log line that matches. */
  waitFor(match: (l: LogEntry) => boolean, timeoutMs?: number): Promise<LogEntry>;
}

export interface SpawnOptions {
  /** Run `npm start` (dist/) instead of `node --import tsx src/server/main.ts`. */
  npm?: boolean;
  /** Its own process group (so a test can signal the group and check that nothing is left in it). */
  detached?: boolean;
}

/** Starts the server on 127.0.0.1 port 0 over the fixture bundle; env entries override the defaults. */
export async function spawnServer(env: Record<string, string> = {}, options: SpawnOptions = {}): Promise<ServerProcess> {
  const bundle = (await fixture()).bundle;
  const fullEnv = { ...process.env, SAM3_CHECKPOINT: bundle, SERVER_PORT: '0', SERVER_HOST: '127.0.0.1', IMAGE_MODEL_WARMUP: 'false', ENGINE_THREADS: '2', LOG_LEVEL: 'info', ...env };
  const [cmd, args] = options.npm ? ['npm', ['start']] : [process.execPath, ['--import', 'tsx', path.join(root, 'src', 'server', 'main.ts')]];
  const child = spawn(cmd, args, { cwd: root, env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: options.detached ?? false });
  const logs: LogEntry[] = [];
  const other: string[] = [];
  const waiters: { match: (l: LogEntry) => boolean; resolve: (l: LogEntry) => void }[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    let entry: LogEntry;
    try {
      entry = JSON.parse(line) as LogEntry;
    } catch {
      other.push(line);
      return;
    }
    logs.push(entry);
    for (const w of [...waiters]) {
      if (w.match(entry)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(entry);
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const waitFor = (match: (l: LogEntry) => boolean, timeoutMs = 120_000) =>
    new Promise<LogEntry>((resolve, reject) => {
      const seen = logs.find(match);
      if (seen) return resolve(seen);
      const timer = setTimeout(() => reject(new Error(`no matching log line within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
      waiters.push({ match, resolve: (l) => (clearTimeout(timer), resolve(l)) });
      void exited.then((code) => {
        const late = logs.find(match);
        if (late) resolve(late);
        else reject(new Error(`exited ${code} before a matching log line; stderr: ${stderr}`));
      });
    });
  const port = waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('listening') && typeof l.port === 'number').then((l) => l.port as number);
  port.catch(() => undefined);
  return { child, logs, other, stderr: () => stderr, exited, port, waitFor };
}

/** Whether a process (or, with a negative id, a process group) exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/** `npm start` runs dist/: compile it when a source file is newer than dist/server/main.js. */
export function ensureDist(): void {
  let built = 0;
  try {
    built = statSync(path.join(root, 'dist', 'server', 'main.js')).mtimeMs;
  } catch {
    built = 0;
  }
  if (built >= newestMtime(path.join(root, 'src'))) return;
  const r = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', root], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsc failed: ${r.stdout}${r.stderr}`);
}
