/** COCO RLE strings byte-equal to pycocotools' for random and edge-case masks. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';

import { encodeRle } from '../src/index.js';
import { decodeRle, py, tempDir } from './helpers.js';

interface MaskCase {
  name: string;
  h: number;
  w: number;
  data: Uint8Array; // row-major
}

function makeCases(): MaskCase[] {
  let s = 12345;
  const rand = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
  const out: MaskCase[] = [];
  const add = (name: string, h: number, w: number, f: (y: number, x: number) => boolean) => {
    const data = new Uint8Array(h * w);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[y * w + x] = f(y, x) ? 1 : 0;
    out.push({ name, h, w, data });
  };
  add('empty', 17, 23, () => false);
  add('full', 17, 23, () => true);
  add('one-pixel-first', 9, 7, (y, x) => y === 0 && x === 0);
  add('one-pixel-last', 9, 7, (y, x) => y === 8 && x === 6);
  add('one-pixel-middle', 31, 29, (y, x) => y === 15 && x === 3);
  add('1x1-on', 1, 1, () => true);
  add('1x1-off', 1, 1, () => false);
  add('row', 1, 101, (_, x) => x % 3 === 0);
  add('column', 101, 1, (y) => y % 5 < 2);
  add('checker', 33, 35, (y, x) => (x + y) % 2 === 0);
  add('disc-odd', 127, 251, (y, x) => (y - 60) ** 2 + (x - 120) ** 2 < 50 ** 2);
  add('long-runs', 300, 700, (y, x) => x > 350);
  for (let i = 0; i < 12; i++) {
    const h = 1 + Math.floor(rand() * 120);
    const w = 1 + Math.floor(rand() * 120);
    const p = rand();
    add(`random-${i}`, h, w, () => rand() < p);
  }
  // Blobs with long and short runs mixed (deltas of both signs in the string form).
  add('blobs', 200, 150, (y, x) => Math.sin(x / 7) * Math.cos(y / 11) > 0.3 || (x * y) % 97 === 0);
  return out;
}

describe('COCO RLE', () => {
  const cases = makeCases();
  let expected: string[];

  before(async () => {
    const dir = await tempDir('sam3-rle-');
    const file = path.join(dir, 'masks.json');
    writeFileSync(file, JSON.stringify(cases.map((c) => ({ h: c.h, w: c.w, data: Array.from(c.data) }))));
    const script = [
      'import json, sys, numpy as np',
      'from pycocotools import mask as M',
      'cases = json.load(open(sys.argv[1]))',
      'out = []',
      'for c in cases:',
      '    m = np.asfortranarray(np.array(c["data"], dtype=np.uint8).reshape(c["h"], c["w"]))',
      '    out.append(M.encode(m)["counts"].decode())',
      'print(json.dumps(out))',
    ].join('\n');
    expected = JSON.parse(await py(['-c', script, file])) as string[];
  });

  it('matches pycocotools byte for byte', () => {
    cases.forEach((c, i) => {
      const rle = encodeRle(c.data, c.h, c.w);
      assert.deepEqual(rle.size, [c.h, c.w]);
      assert.equal(rle.counts, expected[i], `mask ${c.name}`);
    });
  });

  it('decodes back to the same mask (column-major)', () => {
    for (const c of cases) {
      const col = decodeRle(encodeRle(c.data, c.h, c.w).counts, c.h, c.w);
      for (let y = 0; y < c.h; y++) for (let x = 0; x < c.w; x++) assert.equal(col[x * c.h + y], c.data[y * c.w + x]);
    }
  });

  it('treats any non-zero byte as foreground', () => {
    for (const c of cases) {
      const scaled = c.data.map((v, i) => (v ? 1 + (i % 255) : 0));
      assert.equal(encodeRle(scaled, c.h, c.w).counts, encodeRle(c.data, c.h, c.w).counts, c.name);
    }
  });

  it('rejects a mask of the wrong size with a clear error', () => {
    assert.throws(() => encodeRle(new Uint8Array(5), 2, 3), /mask has 5 bytes, expected height\*width = 6/);
    assert.throws(() => encodeRle(new Uint8Array(0), 0, 3), /positive integers/);
  });
});
