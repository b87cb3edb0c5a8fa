/**
 * What the reliability suite sends: real small images (PNG, JPEG, WebP, GIF), a real short video in
 * MEDIA_ROOT, and hostile files (truncated images, a PNG whose header claims 10^10 pixels, an SVG
 * that would render for a minute, random bytes).
 */
import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';

import sharp from 'sharp';

import { toolEnv, toolPath } from '../../src/video/ffmpeg.js';
import { jpegImage, pngImage, syntheticImage, tempDir } from '../helpers.js';

export interface Fixtures {
  media: string;
  /** Relative to media: a 16-frame 96x72 MPEG-4 clip. */
  videoPath: string;
  video: Buffer;
  /** Valid images, a few formats and sizes. */
  images: Buffer[];
  /** Images that are not what they claim (truncated, lying headers, vector). */
  bad: { name: string; bytes: Buffer }[];
}

/** A PNG whose IHDR claims width x height (the CRC recomputed), with the 1x1 image's data. */
function lyingPng(width: number, height: number, onePixel: Buffer): Buffer {
  const png = Buffer.from(onePixel);
  // Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4), ...; CRC over type + data.
  png.writeUInt32BE(width, 16);
  png.writeUInt32BE(height, 20);
  png.writeUInt32BE(zlib.crc32(png.subarray(12, 29)), 29);
  return png;
}

export async function makeFixtures(): Promise<Fixtures> {
  const media = await tempDir('sam3-reliability-');
  await mkdir(path.join(media, 'clips'), { recursive: true });
  const videoPath = 'clips/clip.mp4';
  const file = path.join(media, videoPath);
  await promisify(execFile)(toolPath('ffmpeg'), ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=96x72:rate=12', '-frames:v', '16', '-c:v', 'mpeg4', '-pix_fmt', 'yuv420p', '-y', file], { env: toolEnv('ffmpeg') });
  await writeFile(path.join(media, 'not-a-video.mp4'), 'this is text, not a video '.repeat(40));
  const video = await readFile(file);

  const raw = async (w: number, h: number, seed: number) => sharp(await syntheticImage(w, h, seed), { raw: { width: w, height: h, channels: 3 } });
  const images = [
    await pngImage(64, 48, 1),
    await jpegImage(96, 64, 2),
    await (await raw(80, 80, 3)).webp().toBuffer(),
    await (await raw(72, 56, 4)).gif().toBuffer(),
    await jpegImage(120, 90, 5, 6),
  ];
  const onePixel = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#080' } }).png().toBuffer();
  const png = images[0]!;
  const jpeg = images[1]!;
  // A real decompression bomb: 42 megapixels of one colour in a few tens of KB.
  const bomb = await sharp({ create: { width: 7000, height: 6000, channels: 3, background: '#123456' } }).png({ compressionLevel: 9 }).toBuffer();
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="4500" height="4500"><filter id="f"><feGaussianBlur stdDeviation="900"/></filter><rect width="4500" height="4500" filter="url(#f)"/></svg>');
  const bad = [
    { name: 'truncated-png', bytes: png.subarray(0, Math.floor(png.length / 2)) },
    { name: 'truncated-jpeg', bytes: jpeg.subarray(0, Math.floor(jpeg.length * 0.6)) },
    { name: 'png-header-only', bytes: png.subarray(0, 33) },
    { name: 'lying-png-100000x100000', bytes: lyingPng(100_000, 100_000, onePixel) },
    { name: 'lying-png-65535x1', bytes: lyingPng(65_535, 1, onePixel) },
    { name: 'one-pixel', bytes: onePixel },
    { name: `png-bomb-7000x6000-${Math.round(bomb.length / 1024)}KB`, bytes: bomb },
    { name: 'svg-blur', bytes: svg },
    { name: 'svgz-blur', bytes: zlib.gzipSync(svg) },
    { name: 'pdf', bytes: Buffer.from('%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF') },
    { name: 'text', bytes: Buffer.from('just some text, not a picture') },
    { name: 'zero-bytes', bytes: Buffer.alloc(0) },
    { name: 'gif-truncated', bytes: images[3]!.subarray(0, Math.floor(images[3]!.length * 0.7)) },
    { name: 'webp-truncated', bytes: images[2]!.subarray(0, Math.floor(images[2]!.length * 0.5)) },
    { name: 'random-bytes', bytes: Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 37 + 11) % 256)) },
    { name: 'video-as-image', bytes: video.subarray(0, 4096) },
    { name: 'jpeg-magic-then-junk', bytes: Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(200, 7)]) },
  ];
  return { media, videoPath, video, images, bad };
}
