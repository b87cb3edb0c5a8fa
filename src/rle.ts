/**
 * COCO run-length encoding (pycocotools' compressed strings). Encoding runs natively (masks are
 * made there); decoding is for callers that need the pixels of a mask back.
 */
import { invalid } from './errors.js';
import { addon } from './native.js';

/** COCO run-length encoding, as pycocotools' mask.encode writes it. */
export interface RleMask {
  size: [number, number];
  counts: string;
}

/** COCO RLE (pycocotools' compressed string) of a binary mask given row-major, one byte per pixel. */
export function encodeRle(mask: Uint8Array, height: number, width: number): RleMask {
  if (!(mask instanceof Uint8Array)) throw invalid('mask must be a Uint8Array');
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < 1 || width < 1) throw invalid('height and width must be positive integers');
  if (mask.byteLength !== height * width) throw invalid(`mask has ${mask.byteLength} bytes, expected height*width = ${height * width}`);
  return { size: [height, width], counts: addon().rleEncode(mask, height, width, 'row') };
}

/** Decodes a COCO compressed RLE string (column-major counts) into a row-major 0/1 mask. */
export function decodeRle(counts: string, height: number, width: number): Uint8Array {
  const runs: number[] = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0;
    let k = 0;
    let more = 1;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++;
      k++;
      if (!more && c & 0x10) x |= -1 << (5 * k);
    }
    if (runs.length > 2) x += runs[runs.length - 2]!;
    runs.push(x);
  }
  const out = new Uint8Array(height * width);
  let pos = 0;
  let value = 0;
  for (const run of runs) {
    if (value) {
      for (let i = pos; i < pos + run; i++) out[(i % height) * width + Math.floor(i / height)] = 1;
    }
    pos += run;
    value ^= 1;
  }
  return out;
}
