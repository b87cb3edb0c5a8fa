/**
 * Video files (anything ffmpeg decodes) as a FrameSource, from the index probe.ts builds.
 *
 * Frame numbering is the decoder's: frame n is the n-th frame `ffmpeg -i FILE -vsync 0` outputs
 * (with the stream's rotation applied as ffmpeg's autorotate does). How a chunk a..b is found:
 *
 * - At open, ffprobe lists the video stream's packets, giving frame n's timestamp t[n] and the
 *   keyframes (probe.ts).
 * - A chunk is decoded by seeking the input to the last keyframe at or before t[a] (input `-ss`
 *   without accurate seek, `-copyts` so timestamps stay the stream's own) and selecting the
 *   frames whose timestamp lies strictly between the midpoints t[a-1]..t[a] and t[b]..t[b+1]:
 *   seeking only decides where decoding starts, the selection is by timestamp, so an early seek
 *   costs time, never exactness.
 * - ffmpeg must then deliver exactly b-a+1 frames. If it does not (a seek that lands past the
 *   chunk, as MPEG-TS's index-less seeking can), the chunk is decoded again seeking 2 s earlier,
 *   then from the start of the file selecting by decoded-frame number (`select=between(n,a,b)`,
 *   the definition itself), and the source keeps the first plan that worked. The index is not
 *   used at all when packets lack timestamps (some AVI), repeat one or are far out of order
 *   (timestamps restarting mid-file): every chunk is then decoded from the start by frame
 *   number, exact but costing a decode of everything before the chunk.
 * - Frames are scaled to the probed size (a no-op unless the size changes mid-stream) and
 *   converted to rgb24 by ffmpeg's swscale with its default (bicubic) settings.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

import { ErrorCode, Sam3Error } from '../errors.js';
import { TailBuffer, toolEnv, toolPath } from './ffmpeg.js';
import { BaseSource, closedError } from './frame-cache.js';
import { INPUT_OPTIONS, probeVideo, scrub, type VideoProbe } from './probe.js';
import type { FrameSourceStats, Settings } from './source.js';

const ROTATE_FILTERS: Record<0 | 90 | 180 | 270, string[]> = { 0: [], 90: ['transpose=clock'], 180: ['hflip', 'vflip'], 270: ['transpose=cclock'] };

/** Seconds with enough digits for ffmpeg's expression and option parsers (no exponent). */
function seconds(v: number): string {
  return v.toFixed(9);
}

/**
 * ffmpeg's input -ss seeks this much earlier than asked when a stream has B-frames and the
 * demuxer seeks on dts (its "dts heuristic", 3/23 s); the precise target allows for both cases.
 */
const DTS_HEURISTIC_SECONDS = 3 / 23;
/** How far before the chunk's keyframe the second, margin seek goes. */
const MARGIN_SECONDS = 2;

/** How one ffmpeg run finds its frames: by timestamp after an optional seek, or by decoded-frame number from the start. */
type Plan = { by: 'time'; seek: number | null; kind: 'precise' | 'margin' } | { by: 'number' };

export class FfmpegSource extends BaseSource {
  private readonly children = new Map<ChildProcess, Promise<void>>();
  /** precise: seek to the chunk's keyframe; margin: seek MARGIN_SECONDS before it; sequential: by number from the start. */
  private strategy: 'precise' | 'margin' | 'sequential';
  /** suffixEarly[j]: the earliest timestamp of keyframes j.. (a seek target must stay below it). */
  private readonly suffixEarly: Float64Array;
  private seekRuns = 0;
  private fallbacks = 0;

  private constructor(
    file: string,
    private readonly probe: VideoProbe,
    settings: Settings,
  ) {
    super(file, probe.info, settings, settings.chunkFrames);
    this.strategy = probe.times ? 'precise' : 'sequential';
    const keys = probe.keyframes;
    this.suffixEarly = new Float64Array(keys.length + 1).fill(Infinity);
    for (let j = keys.length - 1; j >= 0; j--) this.suffixEarly[j] = Math.min(keys[j]!.early, this.suffixEarly[j + 1]!);
  }

  static async open(file: string, settings: Settings, signal: AbortSignal | undefined): Promise<FfmpegSource> {
    toolPath('ffmpeg'); // fail early (ERR_SAM3_FFMPEG) when the decoder is not usable
    return new FfmpegSource(file, await probeVideo(file, signal), settings);
  }

  stats(): FrameSourceStats {
    return { decodeRuns: this.runs, seekRuns: this.seekRuns, fallbacks: this.fallbacks, mode: this.strategy === 'sequential' ? 'sequential' : 'seek' };
  }

  /**
   * Tries the current strategy, then the more conservative ones. A later plan succeeding where
   * an earlier one did not delivers the exact frames makes it the strategy from then on.
   */
  protected async decode(start: number, end: number): Promise<Uint8Array[]> {
    const plans: Plan[] = [];
    if (this.strategy === 'precise') plans.push({ by: 'time', seek: this.preciseSeek(start), kind: 'precise' });
    if (this.strategy !== 'sequential') {
      const margin: Plan = { by: 'time', seek: this.marginSeek(start), kind: 'margin' };
      if (!plans.some((p) => p.by === 'time' && p.seek === margin.seek)) plans.push(margin);
    }
    plans.push({ by: 'number' });
    let failure: unknown;
    for (const [i, plan] of plans.entries()) {
      if (i > 0) this.fallbacks++;
      try {
        const frames = await this.run(start, end, plan);
        if (i > 0) this.strategy = plan.by === 'number' ? 'sequential' : plan.kind;
        return frames;
      } catch (err) {
        if (this.closed || (err instanceof Sam3Error && err.code === ErrorCode.Ffmpeg)) throw err;
        failure ??= err;
        if (plan.by === 'number') failure = err; // the definition's own error is the one to report
      }
    }
    throw failure;
  }

  /** Index of the last keyframe at or before frame `start`, or -1. */
  private keyframeBefore(start: number): number {
    const keys = this.probe.keyframes;
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (keys[mid]!.index <= start) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  /**
   * An -ss value that lands on the last keyframe at or before `start` whichever of pts or dts the
   * demuxer seeks on, with or without ffmpeg's dts heuristic: after that keyframe's timestamps
   * (plus the heuristic) and before every later keyframe's. Falls back to earlier keyframes when
   * keyframes are too close for that; null (decode from the start) for the first keyframe.
   */
  private preciseSeek(start: number): number | null {
    const keys = this.probe.keyframes;
    for (let j = this.keyframeBefore(start); j >= 0; j--) {
      const key = keys[j]!;
      if (key.index === 0) return null;
      const target = key.late + DTS_HEURISTIC_SECONDS + 0.002;
      if (target < this.suffixEarly[j + 1]! - 0.001) return this.ssValue(target);
    }
    return null;
  }

  /** An -ss value MARGIN_SECONDS before the chunk's keyframe, for demuxers that seek loosely (MPEG-TS). */
  private marginSeek(start: number): number | null {
    const j = this.keyframeBefore(start);
    if (j < 0 || this.probe.keyframes[j]!.index === 0) return null;
    return this.ssValue(this.probe.keyframes[j]!.early - MARGIN_SECONDS);
  }

  /** ffmpeg's input -ss counts from the container's start time. */
  private ssValue(target: number): number | null {
    const ss = target - this.probe.formatStart;
    return ss > 0 ? ss : null;
  }

  private args(start: number, end: number, plan: Plan): string[] {
    const { times, streamIndex, rotation, info } = this.probe;
    const args = ['-nostdin', '-hide_banner', '-loglevel', 'error', ...INPUT_OPTIONS, '-noautorotate'];
    let select: string;
    if (plan.by === 'time' && times) {
      if (plan.seek !== null) {
        args.push('-noaccurate_seek', '-ss', seconds(plan.seek));
        this.seekRuns++;
      }
      args.push('-copyts');
      const lo = start > 0 ? (times[start - 1]! + times[start]!) / 2 : times[0]! - 1;
      const hi = end < times.length - 1 ? (times[end]! + times[end + 1]!) / 2 : times[end]! + 1;
      select = `select='between(t,${seconds(lo)},${seconds(hi)})'`;
    } else {
      select = `select='between(n,${start},${end})'`;
    }
    const filters = [select, ...ROTATE_FILTERS[rotation], `scale=${info.width}:${info.height}`, 'format=rgb24'];
    args.push('-i', `file:${this.path}`, '-map', `0:${streamIndex}`, '-vf', filters.join(','), '-vsync', '0', '-frames:v', String(end - start + 1), '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
    return args;
  }

  /** One ffmpeg run for frames start..end; rejects unless it delivers exactly those frames. */
  private run(start: number, end: number, plan: Plan): Promise<Uint8Array[]> {
    if (this.closed) return Promise.reject(closedError(this.path));
    const count = end - start + 1;
    const frameBytes = this.info.width * this.info.height * 3;
    const args = this.args(start, end, plan);
    const file = toolPath('ffmpeg');
    this.runs++;
    return new Promise<Uint8Array[]>((resolve, reject) => {
      let settled = false;
      const settle = (err: unknown, frames?: Uint8Array[]) => {
        if (settled) return;
        settled = true;
        if (err) reject(err);
        else resolve(frames!);
      };
      const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: toolEnv('ffmpeg'), windowsHide: true });
      let exited!: () => void;
      this.children.set(child, new Promise<void>((r) => (exited = r)));
      const frames: Uint8Array[] = [];
      let current: Buffer | null = null;
      let filled = 0;
      let extra = 0;
      const stderr = new TailBuffer();
      child.stdout.on('data', (data: Buffer) => {
        let at = 0;
        while (at < data.length) {
          if (frames.length === count) {
            extra += data.length - at;
            break;
          }
          current ??= Buffer.allocUnsafeSlow(frameBytes);
          const n = Math.min(frameBytes - filled, data.length - at);
          data.copy(current, filled, at, at + n);
          filled += n;
          at += n;
          if (filled === frameBytes) {
            frames.push(current);
            current = null;
            filled = 0;
          }
        }
      });
      child.stderr.on('data', (data: Buffer) => stderr.push(data));
      child.on('error', (err) => {
        this.children.delete(child);
        exited();
        settle(new Sam3Error(ErrorCode.Ffmpeg, `could not run ffmpeg (${file}): ${err.message}`, undefined, { cause: err }));
      });
      child.on('close', (code, signal) => {
        this.children.delete(child);
        exited();
        if (this.closed) return settle(closedError(this.path));
        const name = path.basename(this.path);
        const tail = scrub(stderr.lines(8), this.path);
        const what = `frames ${start}..${end} of '${name}'`;
        const details = { start, end, ffmpeg: tail };
        if (signal) return settle(new Sam3Error(ErrorCode.VideoDecode, `decoding ${what} failed: ffmpeg was killed by ${signal}${tail ? `:\n${tail}` : ''}`, details));
        if (code !== 0) return settle(new Sam3Error(ErrorCode.VideoDecode, `decoding ${what} failed: ffmpeg exited with code ${code}${tail ? `:\n${tail}` : ''}`, details));
        if (frames.length !== count || filled !== 0 || extra !== 0) {
          const got = `${frames.length} whole frame(s)${filled ? ` and ${filled} stray bytes` : ''}${extra ? ` and ${extra} bytes too many` : ''}`;
          return settle(new Sam3Error(ErrorCode.VideoDecode, `decoding ${what} failed: ffmpeg delivered ${got} instead of ${count} (the file may be truncated or damaged)${tail ? `:\n${tail}` : ''}`, details));
        }
        settle(null, frames);
      });
    });
  }

  protected async stop(): Promise<void> {
    const waits = [...this.children.values()];
    for (const child of this.children.keys()) child.kill('SIGKILL');
    await Promise.all(waits);
  }
}
