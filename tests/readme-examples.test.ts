/**
 * The README's shell examples run as written: every ```bash block that calls curl is run with bash,
 * unchanged but for the server address (a live server on port 0 instead of localhost:8000), in a
 * folder holding image.jpg, a JPEG the size of a phone photo (its base64 is over the 128 KiB
 * a single command-line argument may hold, which is what broke the old example).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

import sharp from 'sharp';

import { root, syntheticImage, tempDir } from './helpers.js';
import { type TestServer, startServer } from './server-helpers.js';

const run = promisify(execFile);

/** The ```bash blocks of the README that call curl. */
function curlBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```bash\n([\s\S]*?)^```$/gm)].map((m) => m[1]!).filter((block) => /^\s*curl\s/m.test(block));
}

/** Consecutive JSON values printed back to back (curl adds no newline between answers). */
function jsonValues(text: string): unknown[] {
  const t = text.trim();
  const out: unknown[] = [];
  let start = 0;
  for (let i = t.indexOf('}{'); ; i = t.indexOf('}{', i + 1)) {
    const end = i < 0 ? t.length : i + 1;
    try {
      out.push(JSON.parse(t.slice(start, end)));
      start = end;
    } catch (err) {
      if (i < 0) throw new Error(`not JSON answers: ${t.slice(start, start + 300)}`, { cause: err });
    }
    if (i < 0) return out;
  }
}

/** A photo-like JPEG: smooth shapes under fine-grained noise, as a camera's sensor gives (~200 KB at 1024x768). */
async function photo(width: number, height: number): Promise<Buffer> {
  const noise = await sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 30 } } })
    .png()
    .toBuffer();
  return sharp(await syntheticImage(width, height, 4), { raw: { width, height, channels: 3 } })
    .composite([{ input: noise, blend: 'soft-light' }])
    .jpeg({ quality: 85 })
    .toBuffer();
}

describe('README examples', () => {
  let srv: TestServer;
  let dir: string;
  let image: Buffer;
  const blocks = curlBlocks(readFileSync(path.join(root, 'README.md'), 'utf8'));

  before(async () => {
    srv = await startServer({});
    dir = await tempDir('sam3-readme-');
    image = await photo(1024, 768);
    writeFileSync(path.join(dir, 'image.jpg'), image);
  });
  after(async () => srv?.close());

  it('the README has curl examples, and the test image is too large for the command line as base64', async () => {
    assert.ok(blocks.length >= 1, 'a ```bash block with curl');
    const base64Bytes = Math.ceil(image.byteLength / 3) * 4;
    assert.ok(base64Bytes > 128 * 1024, `base64 of the image: ${base64Bytes} bytes`);
    // What the old example did: the base64 inside one argument of curl. Linux refuses it.
    const old = await run('bash', ['-c', `curl -s -d "{\\"image\\": \\"$(base64 -w 0 image.jpg)\\"}" ${srv.base}/health`], { cwd: dir }).catch((err: Error & { stderr?: string }) => err);
    assert.ok(old instanceof Error, 'the base64 in an argument fails');
    assert.match(String((old as { stderr?: string }).stderr), /Argument list too long/);
  });

  it('every curl example runs as written against a live server and gets real answers', async () => {
    for (const block of blocks) {
      assert.match(block, /http:\/\/localhost:8000/, 'the examples talk to the default address');
      const script = `set -euo pipefail\n${block.replaceAll('http://localhost:8000', srv.base)}`;
      const { stdout, stderr } = await run('bash', ['-c', script], { cwd: dir, maxBuffer: 64 * 1024 * 1024 });
      const answers = jsonValues(stdout) as Record<string, any>[];
      const calls = block.match(/^\s*curl\s/gm)!.length;
      assert.equal(answers.length, calls, `one JSON answer per curl call (stderr: ${stderr})`);
      for (const a of answers) {
        assert.equal(a.error, undefined, JSON.stringify(a).slice(0, 500));
        assert.deepEqual(a.image_size, { width: 1024, height: 768 });
        assert.equal(a.masks.length, a.num_masks);
        assert.equal(a.scores.length, a.num_masks);
        assert.match(a.image_id, /^[0-9a-f]{64}$/);
      }
      if (answers.length > 1) assert.equal(answers[1]!.image_id, answers[0]!.image_id, 'base64 and the uploaded file are the same image');
    }
  });
});
