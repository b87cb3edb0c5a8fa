/**
 * What an encoded image is, told from its first bytes before any decoder sees it. sharp also
 * renders SVG (librsvg): a 194-byte SVG asking for a 4500x4500 blur takes a minute of CPU, and
 * neither the file size nor the pixel limit bounds that work. So only the raster formats sharp
 * decodes with bounded work are let through; SVG (plain, with an XML prolog, or gzipped as SVGZ),
 * PDF and PostScript are refused as unsupported formats, and anything else is not an image.
 */

/** The raster formats decodeImage accepts (sharp's metadata().format names; AVIF reads as heif). */
export const RASTER_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'heif'] as const;
export type RasterFormat = (typeof RASTER_FORMATS)[number];

/** The names a client knows them by, for messages. */
export const RASTER_FORMAT_NAMES = 'PNG, JPEG, WebP, GIF, TIFF or AVIF';

export type SniffedFormat = { kind: 'raster'; format: RasterFormat } | { kind: 'refused'; format: 'svg' | 'svgz' | 'pdf' | 'postscript'; name: string } | { kind: 'unknown' };

const HEIF_BRANDS = new Set(['avif', 'avis', 'heic', 'heix', 'hevc', 'hevx', 'mif1', 'msf1']);

function ascii(bytes: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...bytes.subarray(start, end));
}

function startsWith(bytes: Uint8Array, magic: readonly number[], at = 0): boolean {
  if (bytes.length < at + magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (bytes[at + i] !== magic[i]) return false;
  return true;
}

/** Index of the first byte after a byte-order mark and ASCII whitespace (UTF-16 text: NULs skipped too). */
function textStart(bytes: Uint8Array): number {
  let i = 0;
  if (startsWith(bytes, [0xef, 0xbb, 0xbf])) i = 3;
  else if (startsWith(bytes, [0xff, 0xfe]) || startsWith(bytes, [0xfe, 0xff])) i = 2;
  const limit = Math.min(bytes.length, 4096);
  while (i < limit && (bytes[i] === 0x20 || bytes[i] === 0x09 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x00)) i++;
  return i;
}

export function sniffImageFormat(bytes: Uint8Array): SniffedFormat {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return { kind: 'raster', format: 'jpeg' };
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return { kind: 'raster', format: 'png' };
  if (bytes.length >= 6 && (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a')) return { kind: 'raster', format: 'gif' };
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP') return { kind: 'raster', format: 'webp' };
  if (startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a]) || startsWith(bytes, [0x49, 0x49, 0x2b, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2b])) {
    return { kind: 'raster', format: 'tiff' };
  }
  if (bytes.length >= 12 && ascii(bytes, 4, 8) === 'ftyp' && HEIF_BRANDS.has(ascii(bytes, 8, 12))) return { kind: 'raster', format: 'heif' };
  if (startsWith(bytes, [0x1f, 0x8b])) return { kind: 'refused', format: 'svgz', name: 'a gzip-compressed file (SVGZ is rendered as SVG)' };
  const at = textStart(bytes);
  if (bytes[at] === 0x3c /* < */) return { kind: 'refused', format: 'svg', name: 'SVG (or other XML)' };
  if (bytes.length >= at + 4 && ascii(bytes, at, at + 4) === '%PDF') return { kind: 'refused', format: 'pdf', name: 'PDF' };
  if (bytes.length >= at + 2 && ascii(bytes, at, at + 2) === '%!') return { kind: 'refused', format: 'postscript', name: 'PostScript' };
  return { kind: 'unknown' };
}
