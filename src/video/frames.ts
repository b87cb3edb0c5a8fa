/**
 * Lazy, frame-accurate video decoding for video sessions: a FrameSource hands out frame i of a
 * video file (anything ffmpeg decodes) or of a directory of JPEG frames as packed RGB, decoding
 * on demand a chunk of frames around i with one ffmpeg run and keeping decoded frames in a
 * byte-bounded LRU cache, so a long video never has to fit in memory.
 *
 * The public types are in source.ts; the chunk planning and the cache in frame-cache.ts; video
 * files in probe.ts (ffprobe) and ffmpeg-source.ts (decoding); JPEG directories in
 * jpeg-folder-source.ts.
 */
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCode, Sam3Error } from '../errors.js';
import { FfmpegSource } from './ffmpeg-source.js';
import { BaseSource } from './frame-cache.js';
import { JpegFolderSource } from './jpeg-folder-source.js';
import {
  DEFAULT_CACHE_BYTES,
  DEFAULT_CHUNK_FRAMES,
  DEFAULT_FOLDER_FPS,
  MAX_CHUNK_FRAMES,
  type FrameSource,
  type FrameSourceStats,
  type OpenVideoOptions,
  type Settings,
} from './source.js';

/**
 * Opens a video file or a directory of JPEG frames. Rejects with ERR_SAM3_MEDIA_NOT_FOUND when
 * `file` does not exist and ERR_SAM3_BAD_VIDEO when it is not a decodable video with a video
 * stream. Resolve client-given paths with resolveMediaPath (media.ts) first.
 */
export async function openVideo(file: string, options: OpenVideoOptions = {}): Promise<FrameSource> {
  const settings = checkOptions(options);
  const { signal } = options;
  signal?.throwIfAborted();
  const abs = path.resolve(file);
  let st: Stats;
  try {
    st = await stat(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new Sam3Error(ErrorCode.MediaNotFound, `video '${path.basename(abs)}' does not exist`, { path: path.basename(abs) }, { cause: err });
    }
    throw new Sam3Error(ErrorCode.BadVideo, `video '${path.basename(abs)}' cannot be read: ${code ?? (err as Error).message}`, undefined, { cause: err });
  }
  let source: BaseSource;
  if (st.isDirectory()) source = await JpegFolderSource.open(abs, settings);
  else if (st.isFile()) source = await FfmpegSource.open(abs, settings, signal);
  else throw new Sam3Error(ErrorCode.BadVideo, `'${path.basename(abs)}' is neither a video file nor a directory of JPEG frames`);
  if (signal) {
    if (signal.aborted) {
      await source.close();
      throw signal.reason;
    }
    source.closeOnAbort(signal);
  }
  return source;
}

export function frameSourceStats(source: FrameSource): FrameSourceStats | undefined {
  return source instanceof BaseSource ? source.stats() : undefined;
}

/** Number of decode runs (ffmpeg processes, or JPEG decodes) of a source from openVideo; 0 otherwise. */
export function decodeRuns(source: FrameSource): number {
  return frameSourceStats(source)?.decodeRuns ?? 0;
}

function checkOptions(options: OpenVideoOptions): Settings {
  const cacheBytes = options.cacheBytes ?? DEFAULT_CACHE_BYTES;
  const chunkFrames = options.chunkFrames ?? DEFAULT_CHUNK_FRAMES;
  const fps = options.fps ?? DEFAULT_FOLDER_FPS;
  if (typeof cacheBytes !== 'number' || !(cacheBytes >= 0) || !Number.isFinite(cacheBytes)) {
    throw new Sam3Error(ErrorCode.InvalidArgument, `cacheBytes must be a finite number >= 0, got ${String(cacheBytes)}`);
  }
  if (!Number.isInteger(chunkFrames) || chunkFrames < 1 || chunkFrames > MAX_CHUNK_FRAMES) {
    throw new Sam3Error(ErrorCode.InvalidArgument, `chunkFrames must be an integer in [1, ${MAX_CHUNK_FRAMES}], got ${String(chunkFrames)}`);
  }
  if (typeof fps !== 'number' || !(fps > 0) || !Number.isFinite(fps)) {
    throw new Sam3Error(ErrorCode.InvalidArgument, `fps must be a finite number > 0, got ${String(fps)}`);
  }
  return { cacheBytes, chunkFrames, fps };
}
