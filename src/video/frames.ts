/**
 * Lazy, frame-accurate video decoding for video sessions: a FrameSource hands out frame i of a
 * video file (anything ffmpeg decodes) or of a directory of JPEG frames as packed RGB, decoding
 * on demand a chunk of frames around i with one ffmpeg run and keeping decoded frames in a
 * byte-bounded LRU cache, so a long video never has to fit in memory.
 *
 * Frame numbering is the decoder's: frame n is the n-th frame `ffmpeg -i FILE -vsync 0` outputs
 * (with the stream's rotation applied as ffmpeg's autorotate does). How a chunk a..b is found:
 *
 * - At open, ffprobe lists the video stream's packets (demuxing only, no decoding): their
 *   presentation timestamps, sorted, give frame n's timestamp t[n], and the keyframe flags give
 *   the keyframes. This is exact when every (non-discarded) packet decodes to one frame, which
 *   holds for the usual codecs and containers (H.264/HEVC/VP8/VP9/AV1/MPEG-4/ProRes/MJPEG in
 *   MP4/MOV/MKV/WebM/MPEG-TS).
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
import type { Dirent, Stats } from 'node:fs';
import { open, readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCode, Sam3Error } from '../errors.js';
import { decodeImage } from '../image.js';
import { TailBuffer, runTool, toolEnv, toolPath } from './ffmpeg.js';

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

const JPEG_NAME = /\.jpe?g$/i;
/**
 * Demuxers refused: those that open other files or URLs named inside the input (playlists,
 * concat lists), and the text-as-video ones (tty and its ANSI-art relatives), which would turn
 * any text file into a "video".
 */
const DENIED_FORMATS = new Set(['hls', 'applehttp', 'concat', 'ffconcat', 'dash', 'sdp', 'rtp', 'rtsp', 'webm_dash_manifest', 'tty', 'bin', 'xbin', 'adf', 'idf']);
/** Input options shared by every ffprobe / ffmpeg run: local files only. */
const INPUT_OPTIONS = ['-protocol_whitelist', 'file'];

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

export function frameSourceStats(source: FrameSource): FrameSourceStats | undefined {
  return source instanceof BaseSource ? source.stats() : undefined;
}

/** Number of decode runs (ffmpeg processes, or JPEG decodes) of a source from openVideo; 0 otherwise. */
export function decodeRuns(source: FrameSource): number {
  return frameSourceStats(source)?.decodeRuns ?? 0;
}

interface Settings {
  cacheBytes: number;
  chunkFrames: number;
  fps: number;
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

function closedError(file: string): Sam3Error {
  return new Sam3Error(ErrorCode.Disposed, `the frame source of '${path.basename(file)}' is closed`);
}

interface Chunk {
  start: number;
  end: number;
  promise: Promise<Uint8Array[]>;
}

/** Range checks, chunk planning, sharing of pending chunks and the LRU cache; subclasses decode. */
abstract class BaseSource implements FrameSource {
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
      throw new Sam3Error(ErrorCode.FrameRange, `frame index ${String(index)} is out of range; the video has ${n} frames (0..${n - 1})`, { index, totalFrames: n });
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

// ---------------------------------------------------------------------------------------------
// Video files through ffprobe / ffmpeg.

interface FfprobeStream {
  index: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  avg_frame_rate?: string;
  r_frame_rate?: string;
  time_base?: string;
  duration?: string;
  nb_frames?: string;
  disposition?: { attached_pic?: number };
  tags?: Record<string, string>;
  side_data_list?: { rotation?: number }[];
}

interface FfprobeOutput {
  streams?: FfprobeStream[];
  format?: { format_name?: string; start_time?: string; duration?: string };
}

interface VideoProbe {
  info: VideoInfo;
  streamIndex: number;
  /** Clockwise rotation to display the decoded picture, as ffmpeg's autorotate applies it. */
  rotation: 0 | 90 | 180 | 270;
  /** The container's start time (what ffmpeg's input -ss is relative to). */
  formatStart: number;
  /** Presentation time of each frame, ascending; null when the packets do not give one per frame. */
  times: Float64Array | null;
  /** Keyframes in display order (only with `times`). */
  keyframes: Keyframe[];
}

interface Keyframe {
  /** Frame index. */
  index: number;
  /** Seconds: the later and the earlier of the packet's pts and dts (demuxers seek on either). */
  late: number;
  early: number;
}

function parseRate(rate: string | undefined): number {
  const m = /^(\d+)\/(\d+)$/.exec(rate ?? '');
  if (!m) return 0;
  const num = Number(m[1]);
  const den = Number(m[2]);
  return den > 0 && num > 0 ? num / den : 0;
}

function round6(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}

function positive(value: string | undefined): number {
  const v = Number(value);
  return Number.isFinite(v) && v > 0 ? v : 0;
}

/** Replaces the absolute path in ffmpeg messages by the file name (no server paths in errors). */
function scrub(text: string, file: string): string {
  return text.split(`file:${file}`).join(path.basename(file)).split(file).join(path.basename(file));
}

function rotationOf(stream: FfprobeStream): 0 | 90 | 180 | 270 {
  let clockwise = 0;
  const matrix = stream.side_data_list?.find((d) => typeof d.rotation === 'number');
  if (matrix) clockwise = -(matrix.rotation as number); // the display matrix angle is counter-clockwise
  else if (stream.tags?.rotate) clockwise = Number(stream.tags.rotate) || 0;
  const r = (((Math.round(clockwise / 90) * 90) % 360) + 360) % 360;
  return r as 0 | 90 | 180 | 270;
}

/** Playlists and file lists are refused before ffprobe would open the files they name. */
const LIST_SIGNATURE = /^(?:\uFEFF)?\s*(?:#EXTM3U|ffconcat|<\?xml|<MPD)/i;

async function probeVideo(file: string, signal: AbortSignal | undefined): Promise<VideoProbe> {
  const input = `file:${file}`;
  const name = path.basename(file);
  const head64 = Buffer.alloc(64);
  const fh = await open(file, 'r');
  try {
    await fh.read(head64, 0, 64, 0);
  } finally {
    await fh.close();
  }
  if (LIST_SIGNATURE.test(head64.toString('latin1'))) {
    throw new Sam3Error(ErrorCode.BadVideo, `'${name}' is a playlist or list of files (HLS, DASH, ffconcat), not a video file`);
  }
  const head = await runTool('ffprobe', ['-v', 'error', ...INPUT_OPTIONS, '-print_format', 'json', '-show_format', '-show_streams', input], { signal, maxStdout: 16 * 1024 * 1024 });
  if (head.code !== 0) {
    const why = head.signal ? `ffprobe was killed by ${head.signal}` : scrub(head.stderr, file) || `ffprobe exited with code ${head.code}`;
    throw new Sam3Error(ErrorCode.BadVideo, `'${name}' is not a readable video: ${why}`, { ffmpeg: scrub(head.stderr, file) });
  }
  let parsed: FfprobeOutput;
  try {
    parsed = JSON.parse(head.stdout.toString('utf8')) as FfprobeOutput;
  } catch (err) {
    throw new Sam3Error(ErrorCode.BadVideo, `'${name}' is not a readable video: ffprobe printed no valid JSON`, undefined, { cause: err });
  }
  const formatName = parsed.format?.format_name ?? '';
  if (formatName.split(',').some((f) => DENIED_FORMATS.has(f))) {
    throw new Sam3Error(ErrorCode.BadVideo, `'${name}' is not a video file (ffmpeg reads it as '${formatName}', which is not accepted)`, { format: formatName });
  }
  const stream = (parsed.streams ?? []).find((s) => s.codec_type === 'video' && s.disposition?.attached_pic !== 1);
  if (!stream) {
    throw new Sam3Error(ErrorCode.BadVideo, `'${name}' has no video stream (format ${formatName || 'unknown'})`, { format: formatName });
  }
  const codedWidth = stream.width ?? 0;
  const codedHeight = stream.height ?? 0;
  if (!(codedWidth > 0 && codedHeight > 0)) {
    throw new Sam3Error(ErrorCode.BadVideo, `'${name}': the video stream has no frame size (codec ${stream.codec_name ?? 'unknown'})`);
  }
  const tb = /^(\d+)\/(\d+)$/.exec(stream.time_base ?? '');
  const tbNum = tb ? Number(tb[1]) : 0;
  const tbDen = tb ? Number(tb[2]) : 0;

  // The packet index: demuxing only, a few bytes of CSV per frame.
  const packets = await runTool('ffprobe', ['-v', 'error', ...INPUT_OPTIONS, '-select_streams', String(stream.index), '-show_entries', 'packet=pts,dts,flags', '-of', 'csv=p=0', input], {
    signal,
    maxStdout: 512 * 1024 * 1024,
  });
  if (packets.code !== 0) {
    const why = packets.signal ? `ffprobe was killed by ${packets.signal}` : scrub(packets.stderr, file);
    throw new Sam3Error(ErrorCode.BadVideo, `'${name}': reading the video packets failed: ${why}`, { ffmpeg: scrub(packets.stderr, file) });
  }
  const pts: number[] = [];
  const keyPackets: { pts: number; dts: number }[] = [];
  let count = 0;
  let missing = false;
  // Lines are 'pts,dts,flags' (flags 'K__': keyframe, discarded, corrupt); side-data sections
  // print empty lines, which the pattern skips.
  for (const line of packets.stdout.toString('latin1').split('\n')) {
    const m = /^(-?\d+|N\/A),(-?\d+|N\/A),([A-Z_]{2,3})(?:,|\s*$)/.exec(line);
    if (!m) continue;
    const flags = m[3]!;
    if (flags.includes('D')) continue; // discarded (before an edit list's start): never output
    count++;
    const v = Number(m[1]);
    if (!Number.isSafeInteger(v)) {
      missing = true;
      continue;
    }
    pts.push(v);
    const dts = Number(m[2]);
    if (flags.includes('K')) keyPackets.push({ pts: v, dts: Number.isSafeInteger(dts) ? dts : v });
  }
  let times: Float64Array | null = null;
  let keyframes: Keyframe[] = [];
  if (!missing && pts.length > 0 && tbNum > 0 && tbDen > 0 && plausibleOrder(pts)) {
    pts.sort((a, b) => a - b);
    let unique = true;
    for (let i = 1; i < pts.length; i++) if (pts[i] === pts[i - 1]) unique = false;
    if (unique) {
      times = Float64Array.from(pts, (v) => (v * tbNum) / tbDen);
      const sec = (v: number) => (v * tbNum) / tbDen;
      keyframes = keyPackets
        .map((k) => ({ index: lowerBound(pts, k.pts), late: sec(Math.max(k.pts, k.dts)), early: sec(Math.min(k.pts, k.dts)) }))
        .sort((a, b) => a.index - b.index);
    }
  }
  const totalFrames = times ? times.length : count || Number(stream.nb_frames) || 0;
  if (!(totalFrames > 0)) throw new Sam3Error(ErrorCode.BadVideo, `'${name}': the video stream has no frames`);

  const streamDuration = positive(stream.duration);
  let fps = parseRate(stream.avg_frame_rate) || parseRate(stream.r_frame_rate);
  const indexDuration = times && times.length > 1 ? ((times[times.length - 1]! - times[0]!) * times.length) / (times.length - 1) : 0;
  const durationSeconds = round6(streamDuration || indexDuration || positive(parsed.format?.duration) || (fps ? totalFrames / fps : 0));
  if (!fps) fps = durationSeconds > 0 ? totalFrames / durationSeconds : DEFAULT_FOLDER_FPS;
  const rotation = rotationOf(stream);
  const swap = rotation === 90 || rotation === 270;
  return {
    info: { totalFrames, fps, width: swap ? codedHeight : codedWidth, height: swap ? codedWidth : codedHeight, durationSeconds: durationSeconds || totalFrames / fps },
    streamIndex: stream.index,
    rotation,
    formatStart: Number(parsed.format?.start_time) || 0,
    times,
    keyframes,
  };
}

/** How far (in frames) B-frame reordering may move a frame between decode and display order. */
const MAX_REORDER = 64;

/**
 * Whether sorting the timestamps (decode order) gives the display order: reordering only moves a
 * frame a few places. A timestamp discontinuity (concatenated MPEG-TS, a reset clock) moves many
 * frames far, and sorting would interleave two segments: such streams decode from the start.
 */
function plausibleOrder(decodeOrder: number[]): boolean {
  const ranks = decodeOrder.map((_, i) => i).sort((a, b) => decodeOrder[a]! - decodeOrder[b]! || a - b);
  for (let display = 0; display < ranks.length; display++) {
    if (Math.abs(ranks[display]! - display) > MAX_REORDER) return false;
  }
  return true;
}

/** First i with a[i] >= x (a ascending). */
function lowerBound(a: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

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

class FfmpegSource extends BaseSource {
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

// ---------------------------------------------------------------------------------------------
// Directories of JPEG frames.

const naturalOrder = new Intl.Collator('en', { numeric: true, sensitivity: 'base' }).compare;

class JpegFolderSource extends BaseSource {
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
