/**
 * The public types of lazy video frame decoding (frames.ts opens a FrameSource), and the
 * settings and limits the sources share.
 */
export interface VideoInfo {
  totalFrames: number;
  fps: number;
  width: number;
  height: number;
  durationSeconds: number;
}

/** Packed RGB, 3 bytes per pixel, row-major, width*height*3 bytes. */
export interface RgbFrame {
  /** Shared with the cache: treat it as read-only. */
  rgb: Uint8Array;
  width: number;
  height: number;
}

export interface FrameSource {
  readonly info: VideoInfo;
  readonly path: string;
  /** Decoded frame `index` (0-based). Rejects with ERR_SAM3_FRAME_RANGE when out of range. */
  frame(index: number): Promise<RgbFrame>;
  /** Bytes of decoded frames held in the cache now. */
  cachedBytes(): number;
  /** Kills any running ffmpeg, frees the cache; later frame() calls reject with ERR_SAM3_DISPOSED. */
  close(): Promise<void>;
}

export interface OpenVideoOptions {
  /** Upper bound on the bytes of decoded frames kept. Default 256 MiB. */
  cacheBytes?: number;
  /** Frames decoded per ffmpeg run. Default 16; capped to the frames `cacheBytes` holds (at least 1). */
  chunkFrames?: number;
  /** Aborts opening (kills ffprobe); once open, aborting closes the source. */
  signal?: AbortSignal;
  /** Frame rate reported for a directory of JPEG frames. Default 30. Ignored for video files. */
  fps?: number;
}

export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024;
export const DEFAULT_CHUNK_FRAMES = 16;
export const DEFAULT_FOLDER_FPS = 30;
export const MAX_CHUNK_FRAMES = 1024;

/** Test and metrics hook: how the source has decoded so far. */
export interface FrameSourceStats {
  /** ffmpeg processes started (video files) or JPEG files decoded (directories). */
  decodeRuns: number;
  /** ffmpeg runs that seeked into the file instead of decoding from its start. */
  seekRuns: number;
  /** Chunks decoded again from the start because a seeking run did not deliver exactly. */
  fallbacks: number;
  /** 'seek': timestamp index in use; 'sequential': every chunk decodes from the start; 'images': JPEG directory. */
  mode: 'seek' | 'sequential' | 'images';
}

/** OpenVideoOptions checked and defaulted (checkOptions in frames.ts). */
export interface Settings {
  cacheBytes: number;
  chunkFrames: number;
  fps: number;
}
