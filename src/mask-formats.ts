/**
 * A mask in the other forms annotation tools import: COCO-style polygons (CVAT, Label Studio) and a
 * PNG. Masks are made natively as COCO RLE; these decode one and convert it.
 *
 * Polygons come from d3-contour's marching squares at the 0.5 level over the mask's bounding box
 * (one pixel of margin). Vertices are in pixel units of the image, (0, 0) the top-left corner of
 * the top-left pixel, so pixel (x, y) covers [x, x + 1] x [y, y + 1]; each vertex lies on a pixel
 * edge, midway along it, so a polygon's outline runs between the object's pixel centres and the
 * background's, cutting each corner pixel diagonally. Rasterised back by pixel centres (a pixel is
 * in the mask when its centre is inside), the polygons give the mask again, except where two
 * pixels touch only at a corner (marching squares then joins or splits them by its saddle rule).
 */
import { contours } from 'd3-contour';
import sharp from 'sharp';

import { invalid } from './errors.js';
import { type RleMask, decodeRle } from './rle.js';

export type MaskFormat = 'rle' | 'polygon' | 'png';
export const MASK_FORMATS: readonly MaskFormat[] = ['rle', 'polygon', 'png'];

/**
 * A mask as polygons. `polygons[i]` is the outer ring of one connected region, flat
 * [x1, y1, x2, y2, ...] as COCO's `segmentation` lists it; `holes[i]` the rings of the holes in that
 * region (empty when it has none). The mask is the union over i of polygons[i] minus its holes; a
 * region inside a hole is a polygon of its own. Tools that read only COCO's list (`polygons`) get the
 * regions with their holes filled.
 */
export interface PolygonMask {
  size: [number, number];
  polygons: number[][];
  holes: number[][][];
}

/** A mask as a base64 8-bit greyscale PNG at the image size: 255 on the object, 0 elsewhere. */
export interface PngMask {
  size: [number, number];
  png: string;
}

export type FormattedMask = RleMask | PolygonMask | PngMask;

/** The 0/1 pixels of a mask, row-major. */
function pixels(mask: RleMask): { data: Uint8Array; height: number; width: number } {
  const [height, width] = mask.size;
  return { data: decodeRle(mask.counts, height, width), height, width };
}

/** Rounds to 1/1000 of a pixel (marching squares at 0.5 between 0 and 1 makes halves). */
const round = (v: number) => Math.round(v * 1000) / 1000;

/** The mask's regions as polygons with their holes (see PolygonMask). */
export function maskToPolygons(mask: RleMask): PolygonMask {
  const { data, height, width } = pixels(mask);
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      if (data[row + x]) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        y1 = y;
      }
    }
  }
  const out: PolygonMask = { size: [height, width], polygons: [], holes: [] };
  if (x1 < 0) return out;
  // The bounding box with a pixel of background around it, so that every ring closes inside the grid.
  const gx = x0 - 1;
  const gy = y0 - 1;
  const gw = x1 - x0 + 3;
  const gh = y1 - y0 + 3;
  const grid = new Float64Array(gw * gh);
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) grid[(y - gy) * gw + (x - gx)] = data[y * width + x]!;
  }
  const [level] = contours().size([gw, gh]).thresholds([0.5])(Array.from(grid));
  for (const polygon of level!.coordinates) {
    const rings = polygon.map((ring) => {
      const flat: number[] = [];
      // d3 closes each ring by repeating its first point; COCO lists each vertex once.
      for (const [x, y] of ring.slice(0, -1)) flat.push(round(x! + gx), round(y! + gy));
      return flat;
    });
    out.polygons.push(rings[0]!);
    out.holes.push(rings.slice(1));
  }
  return out;
}

/** The mask as a PNG (see PngMask). */
export async function maskToPng(mask: RleMask): Promise<PngMask> {
  const { data, height, width } = pixels(mask);
  const grey = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) grey[i] = data[i] ? 255 : 0;
  const png = await sharp(grey, { raw: { width, height, channels: 1 } }).toColourspace('b-w').png({ compressionLevel: 6 }).toBuffer();
  return { size: [height, width], png: png.toString('base64') };
}

/** Masks in the asked format, in order ('rle' returns them as they are). */
export async function formatMasks(masks: readonly RleMask[], format: MaskFormat = 'rle'): Promise<FormattedMask[]> {
  if (format === 'rle') return [...masks];
  if (format === 'polygon') return masks.map(maskToPolygons);
  if (format === 'png') return Promise.all(masks.map(maskToPng));
  throw invalid(`mask format must be one of ${MASK_FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
}
