/**
 * Directories of JPEG frames as a FrameSource: the files in natural name order, one file decoded
 * per chunk.
 */
import type { Dirent } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCode, Sam3Error } from '../errors.js';
import { decodeImage } from '../image.js';
import { BaseSource, closedError } from './frame-cache.js';
import type { FrameSourceStats, Settings, VideoInfo } from './source.js';

const JPEG_NAME = /\.jpe?g$/i;

const naturalOrder = new Intl.Collator('en', { numeric: true, sensitivity: 'base' }).compare;

export class JpegFolderSource extends BaseSource {
  private readonly inFlight = new Set<Promise<unknown>>();

  private constructor(
    dir: string,
    private readonly files: string[],
    info: VideoInfo,
    settings: Settings,
  ) {
    // One file per decode: no process to amortise, and sharp decodes off the JS thread.
    super(dir, info, settings, 1);
  }

  static async open(dir: string, settings: Settings): Promise<JpegFolderSource> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      throw new Sam3Error(ErrorCode.BadVideo, `the frame directory '${path.basename(dir)}' cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, undefined, { cause: err });
    }
    // Regular files only: a symlink inside the directory could point outside MEDIA_ROOT.
    const names = entries
      .filter((e) => e.isFile() && JPEG_NAME.test(e.name) && !e.name.startsWith('.'))
      .map((e) => e.name)
      .sort(naturalOrder);
    if (names.length === 0) {
      throw new Sam3Error(ErrorCode.BadVideo, `the directory '${path.basename(dir)}' has no JPEG frames (*.jpg, *.jpeg)`);
    }
    const files = names.map((n) => path.join(dir, n));
    const first = await decodeJpeg(files[0]!);
    const info: VideoInfo = {
      totalFrames: files.length,
      fps: settings.fps,
      width: first.width,
      height: first.height,
      durationSeconds: files.length / settings.fps,
    };
    const source = new JpegFolderSource(dir, files, info, settings);
    source.runs = 1;
    source.seed(0, first.data);
    return source;
  }

  stats(): FrameSourceStats {
    return { decodeRuns: this.runs, seekRuns: 0, fallbacks: 0, mode: 'images' };
  }

  protected async decode(start: number, end: number): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    for (let i = start; i <= end; i++) {
      if (this.closed) throw closedError(this.path);
      this.runs++;
      const job = decodeJpeg(this.files[i]!);
      this.inFlight.add(job);
      try {
        const img = await job;
        if (img.width !== this.info.width || img.height !== this.info.height) {
          throw new Sam3Error(ErrorCode.BadVideo, `frame ${i} ('${path.basename(this.files[i]!)}') is ${img.width}x${img.height}; every frame must have the first frame's size ${this.info.width}x${this.info.height}`, { index: i });
        }
        out.push(img.data);
      } finally {
        this.inFlight.delete(job);
      }
    }
    return out;
  }

  protected async stop(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }
}

async function decodeJpeg(file: string): Promise<{ data: Buffer; width: number; height: number }> {
  try {
    return await decodeImage(await readFile(file));
  } catch (err) {
    const why = err instanceof Sam3Error ? err.message : ((err as NodeJS.ErrnoException).code ?? (err as Error).message);
    throw new Sam3Error(ErrorCode.BadVideo, `frame file '${path.basename(file)}': ${why}`, undefined, { cause: err });
  }
}
