/**
 * The FFmpeg and FFprobe binaries: static Linux builds shipped as npm packages
 * (@ffmpeg-installer/ffmpeg and @ffprobe-installer/ffprobe), overridable with the environment
 * variables FFMPEG_PATH and FFPROBE_PATH. Processes are always spawned with argument arrays,
 * never through a shell, and their output is collected with bounded buffers.
 */
import { spawn } from 'node:child_process';
import { accessSync, chmodSync, constants, statSync } from 'node:fs';
import { createRequire } from 'node:module';

import { ErrorCode, Sam3Error } from '../errors.js';

export type FfTool = 'ffmpeg' | 'ffprobe';

const PACKAGES: Record<FfTool, { pkg: string; env: string }> = {
  ffmpeg: { pkg: '@ffmpeg-installer/ffmpeg', env: 'FFMPEG_PATH' },
  ffprobe: { pkg: '@ffprobe-installer/ffprobe', env: 'FFPROBE_PATH' },
};

const resolved = new Map<FfTool, { file: string; bundled: boolean }>();

/**
 * The static glibc inside the bundled builds crashes (SIGSEGV) when iconv loads the host's gconv
 * modules, which ffprobe's MPEG-TS demuxer does for every .ts file. Pointing GCONV_PATH at a
 * directory that does not exist makes iconv_open fail cleanly instead (ffmpeg then keeps the
 * strings as they are). Applied only to the bundled binaries, not to FFMPEG_PATH / FFPROBE_PATH.
 */
const BUNDLED_ENV = { GCONV_PATH: '/nonexistent/sam3-no-gconv' };

/** Environment for spawning `tool`. */
export function toolEnv(tool: FfTool): NodeJS.ProcessEnv {
  toolPath(tool);
  return resolved.get(tool)!.bundled ? { ...process.env, ...BUNDLED_ENV } : process.env;
}

/**
 * Absolute path of an executable ffmpeg / ffprobe. The env override wins; otherwise the binary
 * from the npm package. `npm install --ignore-scripts` skips the packages' postinstall
 * `chmod u+x`, so a bundled binary that lost its execute bit gets it back here (an env-given
 * binary is never modified). Throws ERR_SAM3_FFMPEG (a server-side error) when none is usable.
 */
export function toolPath(tool: FfTool): string {
  const cached = resolved.get(tool);
  if (cached) return cached.file;
  const { pkg, env } = PACKAGES[tool];
  const fromEnv = process.env[env];
  let file: string;
  if (fromEnv) {
    file = fromEnv;
    try {
      accessSync(file, constants.X_OK);
    } catch (err) {
      throw new Sam3Error(ErrorCode.Ffmpeg, `${env}=${file} is not an executable file: ${(err as Error).message}`, { tool }, { cause: err });
    }
  } else {
    try {
      file = (createRequire(import.meta.url)(pkg) as { path: string }).path;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      throw new Sam3Error(ErrorCode.Ffmpeg, `no ${tool} binary: the npm package ${pkg} is not usable here (${message}); install it or set ${env}`, { tool }, { cause: err });
    }
    ensureExecutable(file, tool, env);
  }
  resolved.set(tool, { file, bundled: !fromEnv });
  return file;
}

function ensureExecutable(file: string, tool: FfTool, env: string): void {
  try {
    accessSync(file, constants.X_OK);
    return;
  } catch {
    // Lost +x (the package's postinstall did not run): add x wherever r is set.
  }
  try {
    const mode = statSync(file).mode & 0o777;
    chmodSync(file, mode | ((mode & 0o444) >> 2) | 0o100);
    accessSync(file, constants.X_OK);
  } catch (err) {
    throw new Sam3Error(ErrorCode.Ffmpeg, `${file} is not executable and could not be made so (${(err as Error).message}); run 'chmod +x ${file}' or set ${env}`, { tool }, { cause: err });
  }
}

/** Keeps the last `limit` bytes of a stream of text (ffmpeg's stderr). */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly limit = 8192) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - (this.chunks[0]?.length ?? 0) >= this.limit && this.chunks.length > 1) {
      this.size -= this.chunks.shift()!.length;
    }
  }

  /** The last `lines` non-empty lines. */
  lines(lines = 8): string {
    let text = Buffer.concat(this.chunks).toString('utf8');
    if (this.size > this.limit) text = text.slice(-this.limit);
    return text
      .split(/\r?\n|\r/)
      .map((l) => l.trimEnd())
      .filter((l) => l.length > 0)
      .slice(-lines)
      .join('\n');
  }
}

export interface RunResult {
  stdout: Buffer;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Runs ffprobe (or ffmpeg) to completion and collects its output, at most `maxStdout` bytes of
 * stdout. The signal kills the process. Spawn failures reject with ERR_SAM3_FFMPEG.
 */
export function runTool(tool: FfTool, args: string[], options: { signal?: AbortSignal; maxStdout?: number } = {}): Promise<RunResult> {
  const file = toolPath(tool);
  const maxStdout = options.maxStdout ?? 64 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const { signal } = options;
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: toolEnv(tool), windowsHide: true });
    const out: Buffer[] = [];
    let outBytes = 0;
    let overflow = false;
    const err = new TailBuffer();
    const onAbort = () => child.kill('SIGKILL');
    signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (chunk: Buffer) => {
      if (outBytes + chunk.length > maxStdout) {
        overflow = true;
        child.kill('SIGKILL');
        return;
      }
      out.push(chunk);
      outBytes += chunk.length;
    });
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (e) => {
      signal?.removeEventListener('abort', onAbort);
      reject(new Sam3Error(ErrorCode.Ffmpeg, `could not run ${tool} (${file}): ${e.message}`, { tool }, { cause: e }));
    });
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort);
      if (signal?.aborted) return reject(signal.reason);
      if (overflow) return reject(new Sam3Error(ErrorCode.VideoDecode, `${tool} wrote more than ${maxStdout} bytes of output`, { tool }));
      resolve({ stdout: Buffer.concat(out, outBytes), stderr: err.lines(12), code, signal: sig });
    });
  });
}
