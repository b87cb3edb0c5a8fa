/**
 * Image decoding with sharp: any format sharp reads, EXIF orientation applied, converted to 8-bit
 * sRGB with alpha dropped (what PIL's exif_transpose + convert('RGB') gives the Python processor).
 * Decoding runs on libuv's pool inside sharp, off the JS thread; only pixels reach the engine.
 */
import sharp, { type Metadata } from 'sharp';

import { ErrorCode, Sam3Error, invalid } from './errors.js';
import { RASTER_FORMAT_NAMES, RASTER_FORMATS, type RasterFormat, sniffImageFormat } from './image-format.js';

export interface DecodedImage {
  data: Buffer;
  width: number;
  height: number;
}

export interface DecodeOptions {
  /** Refuse images with more pixels than this (decompression bombs). Default 50 megapixels. */
  maxPixels?: number;
  /** Refuse images whose shorter side is below this many pixels. Default 8. */
  minSide?: number;
}

export const DEFAULT_MAX_PIXELS = 50_000_000;
export const DEFAULT_MIN_SIDE = 8;

export async function decodeImage(input: Uint8Array, options: DecodeOptions = {}): Promise<DecodedImage> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const minSide = options.minSide ?? DEFAULT_MIN_SIDE;
  if (!(input instanceof Uint8Array)) {
    throw new Sam3Error(ErrorCode.InvalidImage, 'the image must be a Buffer or Uint8Array of encoded image bytes');
  }
  if (input.byteLength === 0) throw new Sam3Error(ErrorCode.InvalidImage, 'the image is empty (0 bytes)');
  // The format is told from the bytes before sharp sees them: vector formats are refused unread.
  const sniffed = sniffImageFormat(input);
  if (sniffed.kind === 'refused') throw unsupportedFormat(sniffed.format, sniffed.name);
  if (sniffed.kind === 'unknown') {
    throw new Sam3Error(ErrorCode.InvalidImage, "the bytes are not a readable image (they start with no known image signature)");
  }
  let meta: Metadata;
  try {
    meta = await sharp(input, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new Sam3Error(ErrorCode.InvalidImage, `the bytes are not a readable image: ${(err as Error).message}`, undefined, { cause: err });
  }
  if (!RASTER_FORMATS.includes(meta.format as RasterFormat)) throw unsupportedFormat(String(meta.format), String(meta.format).toUpperCase());
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (width * height > maxPixels) {
    throw new Sam3Error(ErrorCode.ImageTooLarge, `the image is ${width}x${height} = ${width * height} pixels, above the limit of ${maxPixels}; send a smaller image`, { width, height, max_pixels: maxPixels });
  }
  if (Math.min(width, height) < minSide) {
    throw new Sam3Error(ErrorCode.InvalidImage, `the image is ${width}x${height}; both sides must be at least ${minSide} pixels`, { width, height, min_side: minSide });
  }
  try {
    const { data, info } = await sharp(input, { limitInputPixels: maxPixels, failOn: 'error', pages: 1 })
      .rotate()
      .toColourspace('srgb')
      .removeAlpha()
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) {
      throw new Sam3Error(ErrorCode.InvalidImage, `decoded image has ${info.channels} channels; expected RGB`);
    }
    return { data, width: info.width, height: info.height };
  } catch (err) {
    if (err instanceof Sam3Error) throw err;
    throw new Sam3Error(ErrorCode.InvalidImage, `the image could not be decoded: ${(err as Error).message}`, undefined, { cause: err });
  }
}

function unsupportedFormat(format: string, name: string): Sam3Error {
  return new Sam3Error(
    ErrorCode.UnsupportedImageFormat,
    `the image is ${name}, a format whose rendering cost cannot be bounded, so it is not decoded; send a ${RASTER_FORMAT_NAMES} image (rasterise it first)`,
    { format, supported: [...RASTER_FORMATS] },
  );
}

/** Raw RGB pixels (3 bytes per pixel, row-major), for callers that decoded the image already. */
export interface RgbImage {
  rgb: Uint8Array;
  width: number;
  height: number;
}

/** Encoded image bytes (any format sharp reads) or raw RGB pixels. */
export type ImageInput = Uint8Array | RgbImage;

/** The RGB pixels of an image input: encoded bytes are decoded, raw pixels are checked. */
export async function imagePixels(input: ImageInput, options: DecodeOptions = {}): Promise<DecodedImage | { data: Uint8Array; width: number; height: number }> {
  if (input instanceof Uint8Array) return decodeImage(input, options);
  if (input && typeof input === 'object' && (input as RgbImage).rgb instanceof Uint8Array) {
    const { rgb, width, height } = input as RgbImage;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || rgb.byteLength !== width * height * 3) {
      throw invalid(`raw RGB image must have integer width and height and width*height*3 bytes (got ${width}x${height}, ${rgb.byteLength} bytes)`);
    }
    return { data: rgb, width, height };
  }
  throw invalid('an image must be encoded bytes (Buffer/Uint8Array) or {rgb, width, height}');
}
