/**
 * The native heap's controls: heapStats(), trimNativeHeap() and SAM3_MALLOC_MMAP_THRESHOLD (read
 * by the addon at load, so checked in child processes).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';

import { heapStats, trimNativeHeap } from '../src/index.js';
import { root } from './helpers.js';

const exec = promisify(execFile);

async function childHeap(env: Record<string, string>): Promise<{ ok: boolean; out: string }> {
  const code = "import('./src/index.ts').then((m) => console.log(JSON.stringify(m.heapStats())))";
  const clean = { ...process.env };
  delete clean.MALLOC_MMAP_THRESHOLD_;
  delete clean.SAM3_MALLOC_MMAP_THRESHOLD;
  try {
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', '-e', code], { cwd: root, env: { ...clean, ...env } });
    return { ok: true, out: stdout.trim() };
  } catch (err) {
    return { ok: false, out: String((err as { stderr?: string }).stderr ?? err) };
  }
}

test('heapStats reports glibc heap figures', () => {
  const h = heapStats();
  assert.ok(h, 'glibc on linux');
  assert.ok(h.inUseBytes > 0);
  assert.ok(h.freeBytes >= 0);
  assert.ok(h.mmapBytes >= 0 && h.mmapBytes <= h.inUseBytes);
});

test('trimNativeHeap trims only when the heap holds at least the given free bytes', async () => {
  const skipped = await trimNativeHeap(Number.MAX_SAFE_INTEGER);
  assert.equal(skipped.trimmed, false);
  assert.ok(skipped.freeBytes > 0 && skipped.freeBytes < Number.MAX_SAFE_INTEGER);
  const done = await trimNativeHeap(0);
  assert.equal(typeof done.trimmed, 'boolean');
  assert.ok(done.freeBytes >= 0);
});

test('SAM3_MALLOC_MMAP_THRESHOLD fixes the mmap threshold; unset leaves glibc its own rule; a bad value stops the load', async () => {
  const unset = await childHeap({});
  assert.ok(unset.ok, unset.out);
  assert.equal(JSON.parse(unset.out).mmapThresholdBytes, null);
  const set = await childHeap({ SAM3_MALLOC_MMAP_THRESHOLD: '262144' });
  assert.ok(set.ok, set.out);
  assert.equal(JSON.parse(set.out).mmapThresholdBytes, 262144);
  const glibc = await childHeap({ MALLOC_MMAP_THRESHOLD_: '131072', SAM3_MALLOC_MMAP_THRESHOLD: '262144' });
  assert.equal(JSON.parse(glibc.out).mmapThresholdBytes, 131072, "glibc's own variable wins");
  const bad = await childHeap({ SAM3_MALLOC_MMAP_THRESHOLD: '64MiB' });
  assert.equal(bad.ok, false);
  assert.match(bad.out, /SAM3_MALLOC_MMAP_THRESHOLD must be a byte count from 0 to 33554432 .*not '64MiB'/);
});
