/**
 * Probing a video file with ffprobe (video files through ffprobe / ffmpeg; ffmpeg-source.ts
 * decodes them).
 *
 * At open, ffprobe lists the video stream's packets (demuxing only, no decoding): their
 * presentation timestamps, sorted, give frame n's timestamp t[n], and the keyframe flags give
 * the keyframes. This is exact when every (non-discarded) packet decodes to one frame, which
 * holds for the usual codecs and containers (H.264/HEVC/VP8/VP9/AV1/MPEG-4/ProRes/MJPEG in
 * MP4/MOV/MKV/WebM/MPEG-TS). The index is not used at all when packets lack timestamps (some
 * AVI), repeat one or are far out of order (timestamps restarting mid-file): `times` is then null.
 */
import { open } from 'node:fs/promises';
import path from 'node:path';

import { ErrorCode, Sam3Error } from '../errors.js';
import { runTool } from './ffmpeg.js';
import { DEFAULT_FOLDER_FPS, type VideoInfo } from './source.js';

/**
 * Demuxers refused: those that open other files or URLs named inside the input (playlists,
 * concat lists), and the text-as-video ones (tty and its ANSI-art relatives), which would turn
 * any text file into a "video".
 */
const DENIED_FORMATS = new Set(['hls', 'applehttp', 'concat', 'ffconcat', 'dash', 'sdp', 'rtp', 'rtsp', 'webm_dash_manifest', 'tty', 'bin', 'xbin', 'adf', 'idf']);
/** Input options shared by every ffprobe / ffmpeg run: local files only. */
export const INPUT_OPTIONS = ['-protocol_whitelist', 'file'];

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

export interface VideoProbe {
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

export interface Keyframe {
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
export function scrub(text: string, file: string): string {
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

export async function probeVideo(file: string, signal: AbortSignal | undefined): Promise<VideoProbe> {
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
