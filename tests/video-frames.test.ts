/**
 * Lazy video frame decoding (src/video/frames.ts) and MEDIA_ROOT path safety (src/video/media.ts).
 * Test videos are generated with the bundled ffmpeg: 64x48, 20 fps, 40 frames, where rows 0..15
 * of frame n are a uniform grey of level 6*(n mod 40) (frame identity survives lossy coding) over
 * testsrc2's moving pattern (so encoders use real motion, B-frames and keyframes every 10 frames).
 * Every frame a FrameSource hands out must be byte-identical to frame n of a full
 * `ffmpeg -i FILE -vsync 0` decode.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import sharp from 'sharp';

import { ErrorCode, Sam3Error } from '../src/errors.js';
import { toolEnv, toolPath } from '../src/video/ffmpeg.js';
import { decodeRuns, frameSourceStats, openVideo } from '../src/video/frames.js';
import { resolveMediaPath, resolveVideoId, storeUpload } from '../src/server/video/media.js';

const exec = promisify(execFile);
const W = 64;
const H = 48;
const FRAMES = 40;
const FRAME_BYTES = W * H * 3;

function ffmpeg(args: string[]): Promise<{ stdout: Buffer }> {
  return exec(toolPath('ffmpeg'), ['-nostdin', '-hide_banner', '-loglevel', 'error', '-y', ...args], {
    env: toolEnv('ffmpeg'),
    encoding: 'buffer',
    maxBuffer: 64 * 1024 * 1024,
  }) as Promise<{ stdout: Buffer }>;
}

/** testsrc2 with the identity band; `seconds` long at 20 fps. */
function lavfi(seconds: number): string[] {
  const band = (ch: string) => `${ch}=if(lt(Y\\,16)\\,mod(N\\,40)*6\\,${ch}(X\\,Y))`;
  return ['-f', 'lavfi', '-i', `testsrc2=s=${W}x${H}:r=20:d=${seconds},format=gbrp,geq=${band('r')}:${band('g')}:${band('b')}`];
}

/** All frames of a full decode, the definition of frame numbering. */
async function reference(file: string): Promise<Buffer> {
  return (await ffmpeg(['-i', file, '-vsync', '0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'])).stdout;
}

/** The frame number drawn in the band (mean grey of its interior / 6). */
function identity(rgb: Uint8Array, width = W): number {
  let sum = 0;
  let count = 0;
  for (let y = 3; y < 13; y++) {
    for (let x = 3; x < width - 3; x++) {
      sum += rgb[(y * width + x) * 3 + 1]!;
      count++;
    }
  }
  return Math.round(sum / count / 6);
}

function expectCode(code: string, pattern?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof Sam3Error, `expected a Sam3Error, got ${String(err)}`);
    assert.equal(err.code, code, `code of: ${err.message}`);
    if (pattern) assert.match(err.message, pattern);
    return true;
  };
}

/** Deterministic shuffle (a random access order that is the same every run). */
function shuffled(n: number, seed = 7): number[] {
  const a = [...Array(n).keys()];
  let s = seed;
  for (let i = n - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

describe('video frames', () => {
  let dir: string;
  const videos: Record<string, string> = {};
  const refs: Record<string, Buffer> = {};

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sam3-video-'));
    const v = (name: string) => (videos[name] = path.join(dir, name));
    await ffmpeg([...lavfi(2), '-c:v', 'libx264', '-g', '10', '-pix_fmt', 'yuv420p', '-movflags', '+faststart', v('clip.mp4')]);
    await ffmpeg([...lavfi(2), '-c:v', 'libvpx', '-g', '10', '-b:v', '400k', v('clip.webm')]);
    await ffmpeg([...lavfi(2), '-c:v', 'mpeg4', '-bf', '2', '-g', '10', '-q:v', '3', v('clip.mov')]);
    await ffmpeg(['-i', videos['clip.mp4']!, '-c', 'copy', '-metadata:s:v:0', 'rotate=90', v('rotated.mp4')]);
    // MPEG-TS: no seek index in the container; 6 s so that seeking matters.
    await ffmpeg([...lavfi(6), '-c:v', 'libx264', '-g', '25', '-pix_fmt', 'yuv420p', v('long.ts')]);
    // Two MPEG-TS files back to back: timestamps restart in the middle.
    await ffmpeg([...lavfi(2), '-c:v', 'libx264', '-g', '10', '-pix_fmt', 'yuv420p', v('part.ts')]);
    const part = await readFile(videos['part.ts']!);
    await writeFile(v('joined.ts'), Buffer.concat([part, part]));
    for (const name of ['clip.mp4', 'clip.webm', 'clip.mov', 'rotated.mp4', 'long.ts', 'joined.ts']) refs[name] = await reference(videos[name]!);
  });

  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  for (const name of ['clip.mp4', 'clip.webm', 'clip.mov']) {
    it(`${name}: info and every frame exact in random order`, async () => {
      const src = await openVideo(videos[name]!, { chunkFrames: 4 });
      try {
        assert.equal(src.info.totalFrames, FRAMES);
        assert.equal(src.info.fps, 20);
        assert.equal(src.info.width, W);
        assert.equal(src.info.height, H);
        assert.ok(Math.abs(src.info.durationSeconds - 2) < 0.06, `duration ${src.info.durationSeconds}`);
        assert.equal(src.path, path.resolve(videos[name]!));
        const ref = refs[name]!;
        assert.equal(ref.length, FRAMES * FRAME_BYTES);
        for (const i of shuffled(FRAMES)) {
          const f = await src.frame(i);
          assert.equal(f.width, W);
          assert.equal(f.height, H);
          assert.equal(f.rgb.byteLength, FRAME_BYTES);
          assert.equal(identity(f.rgb), i, `${name}: frame ${i} shows frame ${identity(f.rgb)}`);
          assert.ok(Buffer.from(f.rgb.buffer, f.rgb.byteOffset, f.rgb.byteLength).equals(ref.subarray(i * FRAME_BYTES, (i + 1) * FRAME_BYTES)), `${name}: frame ${i} differs from the full decode`);
        }
        const stats = frameSourceStats(src)!;
        assert.equal(stats.mode, 'seek');
        assert.ok(stats.seekRuns > 0, 'random access seeks into the file');
        assert.equal(stats.fallbacks, 0);
      } finally {
        await src.close();
      }
    });
  }

  it('rotation metadata: the size and pixels of ffmpeg autorotate', async () => {
    const src = await openVideo(videos['rotated.mp4']!, { chunkFrames: 8 });
    try {
      assert.equal(src.info.width, H);
      assert.equal(src.info.height, W);
      const ref = refs['rotated.mp4']!;
      for (const i of [0, 17, 39, 5]) {
        const f = await src.frame(i);
        assert.equal(f.width, H);
        assert.ok(Buffer.from(f.rgb).equals(ref.subarray(i * FRAME_BYTES, (i + 1) * FRAME_BYTES)), `frame ${i}`);
      }
    } finally {
      await src.close();
    }
  });

  it('MPEG-TS (seeks without an index) stays exact', async () => {
    const src = await openVideo(videos['long.ts']!, { chunkFrames: 6 });
    try {
      assert.equal(src.info.totalFrames, 120);
      const ref = refs['long.ts']!;
      for (const i of [100, 3, 77, 50, 119, 26, 61]) {
        const f = await src.frame(i);
        assert.equal(identity(f.rgb), i % 40);
        assert.ok(Buffer.from(f.rgb).equals(ref.subarray(i * FRAME_BYTES, (i + 1) * FRAME_BYTES)), `frame ${i}`);
      }
      assert.equal(frameSourceStats(src)!.mode, 'seek');
    } finally {
      await src.close();
    }
  });

  it('timestamps restarting mid-file: decodes by frame number from the start, exact', async () => {
    const src = await openVideo(videos['joined.ts']!, { chunkFrames: 8 });
    try {
      assert.equal(src.info.totalFrames, 2 * FRAMES);
      assert.equal(frameSourceStats(src)!.mode, 'sequential');
      const ref = refs['joined.ts']!;
      for (const i of [45, 3, 79, 40, 39]) {
        const f = await src.frame(i);
        assert.equal(identity(f.rgb), i % 40);
        assert.ok(Buffer.from(f.rgb).equals(ref.subarray(i * FRAME_BYTES, (i + 1) * FRAME_BYTES)), `frame ${i}`);
      }
    } finally {
      await src.close();
    }
  });

  it('forward reads: one ffmpeg run per chunk', async () => {
    const src = await openVideo(videos['clip.mp4']!, { chunkFrames: 8 });
    try {
      for (let i = 0; i < FRAMES; i++) assert.equal(identity((await src.frame(i)).rgb), i);
      assert.equal(decodeRuns(src), FRAMES / 8);
    } finally {
      await src.close();
    }
  });

  it('backward reads: chunks end at the frame asked for', async () => {
    const src = await openVideo(videos['clip.webm']!, { chunkFrames: 8 });
    try {
      for (let i = FRAMES - 1; i >= 0; i--) assert.equal(identity((await src.frame(i)).rgb), i);
      assert.equal(decodeRuns(src), FRAMES / 8);
      // From the middle backward: the chunk is 22..29, not 29..36.
      const mid = await openVideo(videos['clip.webm']!, { chunkFrames: 8 });
      try {
        await mid.frame(30);
        await mid.frame(29);
        const runs = decodeRuns(mid);
        for (let i = 28; i >= 22; i--) await mid.frame(i);
        assert.equal(decodeRuns(mid), runs);
      } finally {
        await mid.close();
      }
    } finally {
      await src.close();
    }
  });

  it('concurrent reads of one chunk share one ffmpeg run', async () => {
    const src = await openVideo(videos['clip.mp4']!, { chunkFrames: 10 });
    try {
      const frames = await Promise.all([10, 12, 19, 11, 15, 12].map((i) => src.frame(i)));
      assert.deepEqual(frames.map((f) => identity(f.rgb)), [10, 12, 19, 11, 15, 12]);
      assert.equal(decodeRuns(src), 1);
      await src.frame(13); // cached
      assert.equal(decodeRuns(src), 1);
    } finally {
      await src.close();
    }
  });

  it('the cache stays within cacheBytes and chunks fit in it', async () => {
    const cacheBytes = 5 * FRAME_BYTES + 100;
    const src = await openVideo(videos['clip.mov']!, { chunkFrames: 4, cacheBytes });
    try {
      for (let i = 0; i < FRAMES; i++) {
        await src.frame(i);
        assert.ok(src.cachedBytes() <= cacheBytes, `${src.cachedBytes()} > ${cacheBytes}`);
      }
      assert.equal(src.cachedBytes(), 5 * FRAME_BYTES);
      const runs = decodeRuns(src);
      await src.frame(FRAMES - 1); // still cached
      assert.equal(decodeRuns(src), runs);
      await src.frame(0); // evicted long ago
      assert.equal(decodeRuns(src), runs + 1);
    } finally {
      await src.close();
    }
    const tiny = await openVideo(videos['clip.mp4']!, { chunkFrames: 16, cacheBytes: 2 * FRAME_BYTES });
    try {
      for (let i = 0; i < 6; i++) assert.equal(identity((await tiny.frame(i)).rgb), i);
      assert.equal(decodeRuns(tiny), 3, 'a chunk holds no more frames than the cache');
      assert.ok(tiny.cachedBytes() <= 2 * FRAME_BYTES);
    } finally {
      await tiny.close();
    }
    const none = await openVideo(videos['clip.mp4']!, { cacheBytes: 0 });
    try {
      assert.equal(identity((await none.frame(7)).rgb), 7);
      assert.equal(none.cachedBytes(), 0);
    } finally {
      await none.close();
    }
  });

  it('frame indices out of range', async () => {
    const src = await openVideo(videos['clip.mp4']!);
    try {
      for (const bad of [-1, FRAMES, 1.5, Number.NaN, '3' as unknown as number]) {
        await assert.rejects(src.frame(bad), expectCode(ErrorCode.FrameRange, /out of range; the video has 40 frames \(0\.\.39\)/));
      }
      assert.equal(decodeRuns(src), 0);
    } finally {
      await src.close();
    }
  });

  it('files that are not videos', async () => {
    const random = path.join(dir, 'random.mp4');
    await writeFile(random, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 251)));
    await assert.rejects(openVideo(random), expectCode(ErrorCode.BadVideo, /'random\.mp4' is not a readable video: .+/));
    const text = path.join(dir, 'notes.txt');
    await writeFile(text, 'these are not the frames you are looking for\n'.repeat(20));
    await assert.rejects(openVideo(text), expectCode(ErrorCode.BadVideo, /'notes\.txt'/));
    const audio = path.join(dir, 'tone.m4a');
    await ffmpeg(['-f', 'lavfi', '-i', 'sine=d=0.5', '-c:a', 'aac', audio]);
    await assert.rejects(openVideo(audio), expectCode(ErrorCode.BadVideo, /has no video stream/));
    await assert.rejects(openVideo(path.join(dir, 'missing.mp4')), expectCode(ErrorCode.MediaNotFound, /'missing\.mp4' does not exist/));
    const empty = path.join(dir, 'empty-dir');
    await mkdir(empty);
    await assert.rejects(openVideo(empty), expectCode(ErrorCode.BadVideo, /no JPEG frames/));
    // No server path in messages.
    await assert.rejects(openVideo(random), (err: Error) => !err.message.includes(dir));
  });

  it('a truncated file: the frames that are there, then an error with ffmpeg’s stderr', async () => {
    const cut = path.join(dir, 'cut.mp4');
    const bytes = await readFile(videos['clip.mp4']!);
    await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    const src = await openVideo(cut, { chunkFrames: 4 });
    try {
      const n = src.info.totalFrames; // the packets present (the last one may be cut)
      assert.ok(n > 0 && n < FRAMES, `${n} frames`);
      let decoded = 0;
      try {
        for (; decoded < n; decoded++) assert.equal(identity((await src.frame(decoded)).rgb), decoded);
      } catch (err) {
        expectCode(ErrorCode.VideoDecode, /of 'cut\.mp4' failed: ffmpeg .*:\n.*(partial file|Invalid data)/s)(err);
      }
      assert.ok(decoded >= n - 4, `${decoded} of ${n} frames decoded`);
      await assert.rejects(src.frame(n), expectCode(ErrorCode.FrameRange));
    } finally {
      await src.close();
    }
  });

  it('ffmpeg failing or stopping short: errors with its stderr', async () => {
    const file = path.join(dir, 'changing.mp4');
    await writeFile(file, await readFile(videos['clip.mp4']!));
    const src = await openVideo(file, { chunkFrames: 4 });
    try {
      assert.equal(identity((await src.frame(0)).rgb), 0);
      // The file changes under the open source: first garbage, then a shorter video.
      await writeFile(file, 'no longer a video\n');
      await assert.rejects(src.frame(30), expectCode(ErrorCode.VideoDecode, /^decoding frames 30\.\.33 of 'changing\.mp4' failed: ffmpeg exited with code \d+:\n.*changing\.mp4.*Invalid data/s));
      await ffmpeg([...lavfi(1), '-c:v', 'libx264', '-pix_fmt', 'yuv420p', file]);
      await assert.rejects(src.frame(35), expectCode(ErrorCode.VideoDecode, /ffmpeg delivered 0 whole frame\(s\) instead of 4/));
      const stats = frameSourceStats(src)!;
      assert.ok(stats.fallbacks >= 2, 'the conservative plans were tried before giving up');
      await assert.rejects(src.frame(30), (err: Error) => !err.message.includes(dir), 'no server path in the message');
    } finally {
      await src.close();
    }
  });

  it('close() while ffmpeg runs rejects the pending reads, later reads too', async () => {
    const src = await openVideo(videos['long.ts']!, { chunkFrames: 60 });
    const pending = [src.frame(50), src.frame(55)];
    await src.close();
    for (const p of pending) await assert.rejects(p, expectCode(ErrorCode.Disposed, /closed/));
    await assert.rejects(src.frame(1), expectCode(ErrorCode.Disposed));
    assert.equal(src.cachedBytes(), 0);
    await src.close(); // twice is fine
  });

  it('an AbortSignal cancels opening and closes an open source', async () => {
    const aborted = AbortSignal.abort();
    await assert.rejects(openVideo(videos['clip.mp4']!, { signal: aborted }), { name: 'AbortError' });
    const ac = new AbortController();
    const src = await openVideo(videos['clip.mp4']!, { signal: ac.signal });
    await src.frame(0);
    ac.abort();
    await assert.rejects(src.frame(1), expectCode(ErrorCode.Disposed));
  });

  it('bad options', async () => {
    await assert.rejects(openVideo(videos['clip.mp4']!, { chunkFrames: 0 }), expectCode(ErrorCode.InvalidArgument, /chunkFrames/));
    await assert.rejects(openVideo(videos['clip.mp4']!, { cacheBytes: -1 }), expectCode(ErrorCode.InvalidArgument, /cacheBytes/));
    await assert.rejects(openVideo(dir, { fps: 0 }), expectCode(ErrorCode.InvalidArgument, /fps/));
  });

  describe('a directory of JPEG frames', () => {
    let frames: string;
    const grey = (i: number) => 10 + i * 20;

    before(async () => {
      frames = path.join(dir, 'frames');
      await mkdir(frames);
      // Natural order: frame_2 before frame_10 (a plain string sort would not).
      for (let i = 0; i < 12; i++) {
        const jpeg = await sharp({ create: { width: W, height: H, channels: 3, background: { r: grey(i), g: grey(i), b: grey(i) } } }).jpeg({ quality: 95 }).toBuffer();
        await writeFile(path.join(frames, `frame_${i + 1}.${i % 2 ? 'jpeg' : 'jpg'}`), jpeg);
      }
      await writeFile(path.join(frames, 'notes.txt'), 'ignored');
      await writeFile(path.join(frames, '.hidden.jpg'), 'ignored');
    });

    it('info, natural order, cache', async () => {
      const src = await openVideo(frames, { fps: 10, cacheBytes: 3 * FRAME_BYTES });
      try {
        assert.deepEqual(src.info, { totalFrames: 12, fps: 10, width: W, height: H, durationSeconds: 1.2 });
        for (const i of [11, 0, 1, 9, 10, 2]) {
          const f = await src.frame(i);
          assert.equal(f.rgb.byteLength, FRAME_BYTES);
          assert.ok(Math.abs(f.rgb[FRAME_BYTES / 2]! - grey(i)) <= 3, `frame ${i}: ${f.rgb[FRAME_BYTES / 2]} vs ${grey(i)}`);
          assert.ok(src.cachedBytes() <= 3 * FRAME_BYTES);
        }
        await assert.rejects(src.frame(12), expectCode(ErrorCode.FrameRange));
        assert.equal(frameSourceStats(src)!.mode, 'images');
      } finally {
        await src.close();
      }
      const defaults = await openVideo(frames);
      assert.equal(defaults.info.fps, 30);
      await defaults.close();
    });

    it('a frame of another size', async () => {
      const odd = path.join(dir, 'odd-frames');
      await mkdir(odd);
      await writeFile(path.join(odd, '00000.jpg'), await sharp({ create: { width: W, height: H, channels: 3, background: '#808080' } }).jpeg().toBuffer());
      await writeFile(path.join(odd, '00001.jpg'), await sharp({ create: { width: 32, height: 32, channels: 3, background: '#808080' } }).jpeg().toBuffer());
      await writeFile(path.join(odd, '00002.jpg'), 'not a jpeg');
      const src = await openVideo(odd);
      try {
        await assert.rejects(src.frame(1), expectCode(ErrorCode.BadVideo, /frame 1 \('00001\.jpg'\) is 32x32; every frame must have the first frame's size 64x48/));
        await assert.rejects(src.frame(2), expectCode(ErrorCode.BadVideo, /'00002\.jpg'/));
        assert.equal((await src.frame(0)).width, W);
      } finally {
        await src.close();
      }
    });
  });
});

describe('media paths', () => {
  let base: string;
  let media: string;

  before(async () => {
    base = await mkdtemp(path.join(os.tmpdir(), 'sam3-media-'));
    media = path.join(base, 'media');
    await mkdir(path.join(media, 'clips'), { recursive: true });
    await writeFile(path.join(media, 'clips', 'a.mp4'), 'x');
    await writeFile(path.join(base, 'secret.mp4'), 'x');
    await symlink(path.join(base, 'secret.mp4'), path.join(media, 'escape.mp4'));
    await symlink(path.join(media, 'clips', 'a.mp4'), path.join(media, 'alias.mp4'));
    await symlink(base, path.join(media, 'outside-dir'));
  });

  after(async () => {
    if (base) await rm(base, { recursive: true, force: true });
  });

  it('paths inside the root resolve to their real path', async () => {
    const real = path.join(await import('node:fs/promises').then((fs) => fs.realpath(media)), 'clips', 'a.mp4');
    assert.equal(await resolveMediaPath(media, 'clips/a.mp4'), real);
    assert.equal(await resolveMediaPath(media, './clips/../clips/a.mp4'), real);
    assert.equal(await resolveMediaPath(media, path.join(media, 'clips', 'a.mp4')), real);
    assert.equal(await resolveMediaPath(media, 'alias.mp4'), real, 'a symlink to a file inside is fine');
    assert.equal(await resolveMediaPath(`${media}/`, 'clips'), path.dirname(real));
  });

  it('escapes are 403', async () => {
    const forbidden = expectCode(ErrorCode.ForbiddenPath, /outside the server's media directory/);
    await assert.rejects(resolveMediaPath(media, '../secret.mp4'), forbidden);
    await assert.rejects(resolveMediaPath(media, 'clips/../../secret.mp4'), forbidden);
    await assert.rejects(resolveMediaPath(media, '../does-not-exist.mp4'), forbidden, 'outside answers 403 whether or not it exists');
    await assert.rejects(resolveMediaPath(media, path.join(base, 'secret.mp4')), forbidden);
    await assert.rejects(resolveMediaPath(media, '/etc/passwd'), forbidden);
    await assert.rejects(resolveMediaPath(media, 'escape.mp4'), forbidden);
    await assert.rejects(resolveMediaPath(media, 'outside-dir/secret.mp4'), forbidden);
  });

  it('missing is 404, nonsense is 400', async () => {
    await assert.rejects(resolveMediaPath(media, 'clips/nope.mp4'), expectCode(ErrorCode.MediaNotFound, /'clips\/nope\.mp4' does not exist/));
    await assert.rejects(resolveMediaPath(media, 'clips/a.mp4/inner'), expectCode(ErrorCode.MediaNotFound));
    await assert.rejects(resolveMediaPath(media, ''), expectCode(ErrorCode.InvalidArgument));
    await assert.rejects(resolveMediaPath(media, 'a\0b'), expectCode(ErrorCode.InvalidArgument));
  });

  it('uploads: store, then find by video id', async () => {
    const fromBytes = await storeUpload(media, Buffer.from('video bytes'), 'My Clip.MP4');
    assert.match(fromBytes.videoId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(fromBytes.path, path.join(media, 'uploads', `${fromBytes.videoId}.mp4`));
    assert.equal(await readFile(fromBytes.path, 'utf8'), 'video bytes');
    assert.equal(await resolveVideoId(media, fromBytes.videoId), fromBytes.path);
    assert.equal(await resolveVideoId(media, fromBytes.videoId.toUpperCase()), fromBytes.path);
    assert.equal(await resolveMediaPath(media, `uploads/${fromBytes.videoId}.mp4`), fromBytes.path.replace(media, await import('node:fs/promises').then((fs) => fs.realpath(media))));

    const temp = path.join(base, 'upload.tmp');
    await writeFile(temp, 'webm bytes');
    const fromFile = await storeUpload(media, temp, 'clip.webm');
    assert.notEqual(fromFile.videoId, fromBytes.videoId);
    assert.equal(await resolveVideoId(media, fromFile.videoId), path.join(media, 'uploads', `${fromFile.videoId}.webm`));
    assert.equal(await readFile(fromFile.path, 'utf8'), 'webm bytes');
    await assert.rejects(readFile(temp), { code: 'ENOENT' }, 'the temporary file was moved');
  });

  it('uploads: bad extensions 400, unknown ids 404, non-UUIDs 400', async () => {
    for (const name of ['clip.gif', 'clip', 'clip.mp4.exe', '../../clip.txt']) {
      await assert.rejects(storeUpload(media, Buffer.from('x'), name), expectCode(ErrorCode.BadVideo, /upload a \.mp4, \.webm, \.mov, \.mkv, \.avi video/));
    }
    await assert.rejects(resolveVideoId(media, '2b1e7a64-0d4c-4a4e-9c53-8d7f0e5b9a10'), expectCode(ErrorCode.MediaNotFound, /no uploaded video/));
    for (const id of ['nope', '../../etc/passwd', '2b1e7a64-0d4c-4a4e-9c53-8d7f0e5b9a10.mp4', '']) {
      await assert.rejects(resolveVideoId(media, id), expectCode(ErrorCode.InvalidArgument, /not a video id/));
    }
  });

  it('HTTP statuses of the codes', async () => {
    const { toApiError } = await import('../src/server/core/errors.js');
    const ctx = { maxBodyBytes: 1, shuttingDown: false, retryAfterSeconds: 1 };
    const status = (code: ErrorCode) => toApiError(new Sam3Error(code, 'x'), ctx).status;
    assert.equal(status(ErrorCode.ForbiddenPath), 403);
    assert.equal(status(ErrorCode.MediaNotFound), 404);
    assert.equal(status(ErrorCode.BadVideo), 400);
    assert.equal(status(ErrorCode.FrameRange), 400);
    assert.equal(status(ErrorCode.VideoDecode), 422);
    assert.equal(status(ErrorCode.Ffmpeg), 500);
  });
});
