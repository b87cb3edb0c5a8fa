/**
 * Mask formats: polygons (d3-contour's marching squares) rasterised back by pixel centres give the
 * RLE mask again — masks with holes, islands inside holes, several components, regions touching the
 * image border; exactly, except where pixels touch only at a corner (marching squares' saddle rule
 * then joins or splits them: at most those corner pixels differ). PNGs decode to the mask exactly.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import sharp from 'sharp';

import { type PolygonMask, decodeRle, encodeRle, formatMasks, maskToPng, maskToPolygons } from '../src/index.js';

const W = 40;
const H = 30;

function mask(paint: (x: number, y: number) => boolean, w = W, h = H): Uint8Array {
  const m = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) m[y * w + x] = paint(x, y) ? 1 : 0;
  return m;
}

/** Even-odd: is (px, py) inside the closed ring [x1, y1, x2, y2, ...]? */
function inside(ring: number[], px: number, py: number): boolean {
  let c = false;
  const n = ring.length / 2;
  for (let i = 0, j = n - 1; i < n; j = i++) {
    const [xi, yi, xj, yj] = [ring[2 * i]!, ring[2 * i + 1]!, ring[2 * j]!, ring[2 * j + 1]!];
    if (yi > py !== yj > py && px < ((xj - xi) * (py - yi)) / (yj - yi) + xi) c = !c;
  }
  return c;
}

/** The documented rule: union over i of polygons[i] minus its holes, sampled at pixel centres. */
function rasterise(p: PolygonMask): Uint8Array {
  const [h, w] = p.size;
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const cx = x + 0.5;
      const cy = y + 0.5;
      out[y * w + x] = p.polygons.some((ring, i) => inside(ring, cx, cy) && !p.holes[i]!.some((hole) => inside(hole, cx, cy))) ? 1 : 0;
    }
  }
  return out;
}

function differing(a: Uint8Array, b: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

function roundTrip(m: Uint8Array, w = W, h = H) {
  const rle = encodeRle(m, h, w);
  const poly = maskToPolygons(rle);
  assert.deepEqual(poly.size, [h, w]);
  assert.equal(poly.polygons.length, poly.holes.length);
  for (const ring of [...poly.polygons, ...poly.holes.flat()]) {
    assert.equal(ring.length % 2, 0);
    assert.ok(ring.length >= 6, 'a ring has at least 3 vertices');
    for (let i = 0; i < ring.length; i += 2) {
      assert.ok(ring[i]! >= 0 && ring[i]! <= w && ring[i + 1]! >= 0 && ring[i + 1]! <= h, 'vertices lie within the image');
    }
  }
  return { poly, diff: differing(rasterise(poly), decodeRle(rle.counts, h, w)) };
}

describe('polygon masks', () => {
  it('a ring with a hole and an island inside the hole: 2 polygons, 1 hole, exact', () => {
    const m = mask((x, y) => {
      const r = Math.hypot(x - 20, y - 15);
      return (r <= 12 && r >= 6) || r <= 2;
    });
    const { poly, diff } = roundTrip(m);
    assert.equal(poly.polygons.length, 2, 'the ring and the island');
    assert.deepEqual(poly.holes.map((h) => h.length).sort(), [0, 1], 'the ring has one hole, the island none');
    assert.equal(diff, 0);
  });

  it('several components, a rectangle with two holes, regions on every border: exact', () => {
    const m = mask((x, y) => {
      if (x < 3 || y < 2 || x >= W - 2 || y >= H - 1) return x < 10 || y > 25; // touching the borders
      if (x >= 12 && x < 30 && y >= 5 && y < 20) return !((x >= 15 && x < 19 && y >= 8 && y < 12) || (x >= 23 && x < 27 && y >= 13 && y < 17));
      return x === 34 && y === 10; // a lone pixel
    });
    const { poly, diff } = roundTrip(m);
    assert.ok(poly.polygons.length >= 3);
    assert.ok(poly.holes.some((h) => h.length === 2), 'the rectangle keeps its two holes');
    assert.equal(diff, 0);
  });

  it('pixels that touch only at a corner: at most those pixels differ', () => {
    const m = mask((x, y) => (x === 5 && y === 5) || (x === 6 && y === 6) || (x === 20 && y === 10) || (x === 21 && y === 9));
    const { diff } = roundTrip(m);
    assert.ok(diff <= 4, `${diff} pixels differ`);
  });

  it('a blob of random noise, smoothed: within 1% of its pixels', () => {
    let s = 7;
    const rand = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
    const noise = Array.from({ length: W * H }, rand);
    const m = mask((x, y) => {
      let v = 0;
      for (let dy = -2; dy <= 2; dy++) for (let dx = -2; dx <= 2; dx++) v += noise[Math.min(H - 1, Math.max(0, y + dy)) * W + Math.min(W - 1, Math.max(0, x + dx))]!;
      return v / 25 > 0.5;
    });
    const { diff } = roundTrip(m);
    const area = m.reduce((a, b) => a + b, 0);
    assert.ok(area > 50);
    assert.ok(diff <= Math.ceil(area * 0.01), `${diff} of ${area} pixels differ`);
  });

  it('an empty mask has no polygons', () => {
    assert.deepEqual(maskToPolygons(encodeRle(new Uint8Array(W * H), H, W)), { size: [H, W], polygons: [], holes: [] });
  });
});

describe('png masks', () => {
  it('decode to the mask exactly (8-bit greyscale, 255 on the object)', async () => {
    const m = mask((x, y) => (x + y) % 7 < 3 || Math.hypot(x - 10, y - 10) < 5);
    const png = await maskToPng(encodeRle(m, H, W));
    assert.deepEqual(png.size, [H, W]);
    const bytes = Buffer.from(png.png, 'base64');
    const meta = await sharp(bytes).metadata();
    assert.deepEqual([meta.format, meta.channels, meta.depth, meta.space], ['png', 1, 'uchar', 'b-w']);
    const { data, info } = await sharp(bytes).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [W, H]);
    assert.deepEqual(Array.from(data, (v) => (v === 255 ? 1 : v === 0 ? 0 : -1)), Array.from(m));
  });

  it('formatMasks keeps RLE as it is and refuses an unknown format', async () => {
    const rle = encodeRle(mask((x) => x < 5), H, W);
    assert.deepEqual(await formatMasks([rle]), [rle]);
    await assert.rejects(formatMasks([rle], 'svg' as never), /mask format must be one of rle, polygon, png/);
  });
});
