/**
 * What every FrameSource from openVideo shares: it hands out frame i as packed RGB, decoding on
 * demand a chunk of frames around i (one ffmpeg run, or one JPEG file) and keeping decoded frames
 * in a byte-bounded LRU cache, so a long video never has to fit in memory. Subclasses decode.
 */
import path from 'node:path';

import { ErrorCode, Sam3Error } from '../errors.js';
import type { FrameSource, FrameSourceStats, RgbFrame, Settings, VideoInfo } from './source.js';

export function closedError(file: string): Sam3Error {
  return new Sam3Error(ErrorCode.Disposed, `the frame source of '${path.basename(file)}' is closed`);
}

interface Chunk {
  start: number;
  end: number;
  promise: Promise<Uint8Array[]>;
}

/** Range checks, chunk planning, sharing of pending chunks and the LRU cache; subclasses decode. */
export abstract class BaseSource implements FrameSource {
  private readonly cache = new Map<number, Uint8Array>(); // insertion order = LRU order
  private bytes = 0;
  private readonly pending = new Set<Chunk>();
  private last = -1;
  private abortCleanup: (() => void) | undefined;
  protected closed = false;
  protected runs = 0;

  /** Frames per decode: at most what the cache can hold (the chunk is in memory as a whole anyway). */
  private readonly chunkFrames: number;

  protected constructor(
    readonly path: string,
    readonly info: VideoInfo,
    protected readonly settings: Settings,
    chunkFrames: number,
  ) {
    const frameBytes = info.width * info.height * 3;
    this.chunkFrames = Math.max(1, Math.min(chunkFrames, Math.floor(settings.cacheBytes / frameBytes)));
  }

  abstract stats(): FrameSourceStats;

  /** Decodes frames start..end (inclusive), exactly end-start+1 buffers of width*height*3 bytes. */
  protected abstract decode(start: number, end: number): Promise<Uint8Array[]>;

  protected abstract stop(): Promise<void>;

  async frame(index: number): Promise<RgbFrame> {
    if (this.closed) throw closedError(this.path);
    const n = this.info.totalFrames;
    if (!Number.isInteger(index) || index < 0 || index >= n) {
      throw new Sam3Error(ErrorCode.FrameRange, `frame index ${String(index)} is out of range; the video has ${n} frames (0..${n - 1})`, { index, total_frames: n });
    }
    const hit = this.cache.get(index);
    if (hit) {
      this.cache.delete(index);
      this.cache.set(index, hit);
      this.last = index;
      return this.wrap(hit);
    }
    let chunk: Chunk | undefined;
    for (const p of this.pending) if (p.start <= index && index <= p.end) chunk = p;
    chunk ??= this.startChunk(index);
    this.last = index;
    const frames = await chunk.promise;
    if (this.closed) throw closedError(this.path);
    return this.wrap(frames[index - chunk.start]!);
  }

  cachedBytes(): number {
    return this.bytes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abortCleanup?.();
    this.cache.clear();
    this.bytes = 0;
    await this.stop();
  }

  closeOnAbort(signal: AbortSignal): void {
    const onAbort = () => void this.close();
    signal.addEventListener('abort', onAbort, { once: true });
    this.abortCleanup = () => signal.removeEventListener('abort', onAbort);
  }

  /** Puts an already decoded frame in the cache (used for the frame decoded while opening). */
  protected seed(index: number, rgb: Uint8Array): void {
    this.put(index, rgb);
  }

  private wrap(rgb: Uint8Array): RgbFrame {
    return { rgb, width: this.info.width, height: this.info.height };
  }

  private covered(index: number): boolean {
    if (this.cache.has(index)) return true;
    for (const p of this.pending) if (p.start <= index && index <= p.end) return true;
    return false;
  }

  /**
   * Plans the chunk for an uncached frame: forward from `index`, or ending at `index` when the
   * reads go backward (index+1 was just read or is held, index-1 is not). The chunk stops short
   * of frames already cached or being decoded; cut short by an end of the video, it extends the
   * other way instead (the first read at the last frame decodes the frames before it).
   */
  private startChunk(index: number): Chunk {
    const n = this.info.totalFrames;
    const size = this.chunkFrames;
    const backward = index > 0 && (this.last === index + 1 || this.covered(index + 1)) && !this.covered(index - 1);
    let start = index;
    let end = index;
    const grow = (down: boolean) => {
      if (down) while (start > 0 && end - start + 1 < size && !this.covered(start - 1)) start--;
      else while (end < n - 1 && end - start + 1 < size && !this.covered(end + 1)) end++;
    };
    grow(backward);
    grow(!backward);
    const chunk: Chunk = { start, end, promise: Promise.resolve([]) };
    chunk.promise = this.decode(start, end).then(
      (frames) => {
        this.pending.delete(chunk);
        if (!this.closed) {
          // Least needed first, so that eviction drops the frames the reads reach last.
          const order = frames.map((_, i) => start + i);
          if (!backward) order.reverse();
          for (const i of order) if (i !== index) this.put(i, frames[i - start]!);
          this.put(index, frames[index - start]!);
        }
        return frames;
      },
      (err: unknown) => {
        this.pending.delete(chunk);
        throw this.closed ? closedError(this.path) : err;
      },
    );
    this.pending.add(chunk);
    return chunk;
  }

  private put(index: number, rgb: Uint8Array): void {
    const old = this.cache.get(index);
    if (old) {
      this.cache.delete(index);
      this.bytes -= old.byteLength;
    }
    const limit = this.settings.cacheBytes;
    if (rgb.byteLength > limit) return;
    for (const [key, value] of this.cache) {
      if (this.bytes + rgb.byteLength <= limit) break;
      this.cache.delete(key);
      this.bytes -= value.byteLength;
    }
    this.cache.set(index, rgb);
    this.bytes += rgb.byteLength;
  }
}
