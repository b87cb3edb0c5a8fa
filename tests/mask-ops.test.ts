// The native mask operations of concept tracking (native/core/mask_ops.cc) against plain
// references written here: 8-connected component areas (cc_2d's counts) on random masks and edge
// cases, and fill_holes_in_mask_scores (hole filling, then sprinkle removal).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { addon } from '../src/native.js';

/** Breadth-first 8-connected component areas of one h x w mask. */
function areasRef(mask: Uint8Array, h: number, w: number): Int32Array {
  const out = new Int32Array(h * w);
  const seen = new Uint8Array(h * w);
  for (let s = 0; s < h * w; s++) {
    if (!mask[s] || seen[s]) continue;
    const comp = [s];
    seen[s] = 1;
    for (let k = 0; k < comp.length; k++) {
      const p = comp[k]!;
      const y = Math.floor(p / w), x = p % w;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          const q = yy * w + xx;
          if (mask[q] && !seen[q]) {
            seen[q] = 1;
            comp.push(q);
          }
        }
      }
    }
    for (const p of comp) out[p] = comp.length;
  }
  return out;
}

/** fill_holes_in_mask_scores on one mask, as transformers writes it. */
function fillRef(logits: Float32Array, h: number, w: number, maxArea: number): Float32Array {
  const m = Float32Array.from(logits);
  const bg = Uint8Array.from(m, (v) => (v <= 0 ? 1 : 0));
  const bgAreas = areasRef(bg, h, w);
  for (let i = 0; i < m.length; i++) if (bg[i] && bgAreas[i]! <= maxArea) m[i] = Math.fround(0.1);
  const fg = Uint8Array.from(m, (v) => (v > 0 ? 1 : 0));
  const fgArea = fg.reduce((a, b) => a + b, 0);
  const thresh = Math.min(Math.floor(fgArea / 2), maxArea);
  const fgAreas = areasRef(fg, h, w);
  for (let i = 0; i < m.length; i++) if (fg[i] && fgAreas[i]! <= thresh) m[i] = Math.fround(-0.1);
  return m;
}

function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

describe('native mask operations', () => {
  it('component areas equal a breadth-first reference on random masks (8-connectivity)', () => {
    const rand = lcg(7);
    for (const [b, h, w, density] of [
      [3, 17, 23, 0.45],
      [2, 32, 32, 0.3],
      [1, 1, 40, 0.5],
      [4, 9, 1, 0.6],
    ] as const) {
      const mask = Uint8Array.from({ length: b * h * w }, () => (rand() < density ? 1 : 0));
      const got = addon().componentAreas(mask, b, h, w);
      for (let i = 0; i < b; i++) {
        const want = areasRef(mask.subarray(i * h * w, (i + 1) * h * w), h, w);
        assert.deepEqual(Array.from(got.subarray(i * h * w, (i + 1) * h * w)), Array.from(want), `image ${i} of ${b}x${h}x${w}`);
      }
    }
  });

  it('diagonal neighbours connect; empty and full masks', () => {
    // Two pixels touching only at a corner are one component (4-connectivity would say two).
    const diag = Uint8Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1]);
    assert.deepEqual(Array.from(addon().componentAreas(diag, 1, 3, 3)), [3, 0, 0, 0, 3, 0, 0, 0, 3]);
    assert.deepEqual(Array.from(addon().componentAreas(new Uint8Array(6), 1, 2, 3)), [0, 0, 0, 0, 0, 0]);
    assert.deepEqual(Array.from(addon().componentAreas(new Uint8Array(6).fill(1), 1, 2, 3)), [6, 6, 6, 6, 6, 6]);
  });

  it('hole filling and sprinkle removal equal the reference', () => {
    const rand = lcg(11);
    const [b, h, w] = [3, 24, 20];
    const logits = Float32Array.from({ length: b * h * w }, () => Math.fround(rand() * 4 - 1.6));
    for (const maxArea of [0, 1, 4, 16]) {
      const got = addon().fillHoles(logits, b, h, w, maxArea);
      let changed = 0;
      for (let i = 0; i < b; i++) {
        const one = logits.subarray(i * h * w, (i + 1) * h * w);
        const want = maxArea <= 0 ? one : fillRef(one, h, w, maxArea);
        const g = got.subarray(i * h * w, (i + 1) * h * w);
        assert.deepEqual(Array.from(g), Array.from(want), `image ${i}, maxArea ${maxArea}`);
        for (let k = 0; k < g.length; k++) if (g[k] !== one[k]) changed++;
      }
      if (maxArea >= 4) assert.ok(changed > 0, `maxArea ${maxArea} changed pixels`);
      else if (maxArea === 0) assert.equal(changed, 0);
    }
  });

  it('bad shapes are refused', () => {
    assert.throws(() => addon().componentAreas(new Uint8Array(5), 1, 2, 3), /batch\*height\*width/);
    assert.throws(() => addon().fillHoles(new Float32Array(4) as unknown as Float32Array, 1, 2, 2, -1), /fillHoles/);
  });
});
