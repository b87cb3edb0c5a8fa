/**
 * The encode batcher on its own, with a stand-in encode function (the model is exercised by the
 * HTTP tests): batch size and wait bounds, jobs arriving during a pass forming the next batch, and
 * one bad image not failing its companions.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { ImageFeatures, RgbImage } from '../src/index.js';
import { type BatchReport, EncodeBatcher } from '../src/server/devices/encode-batcher.js';

function image(tag: number): RgbImage {
  return { rgb: new Uint8Array([tag, 0, 0]), width: 1, height: 1 };
}

/** Features stand-in: remembers which image it came from. */
function fakeFeatures(img: RgbImage): ImageFeatures {
  return { width: img.rgb[0]!, height: 1, bytes: 1, disposed: false, dispose() {} } as unknown as ImageFeatures;
}

function harness(options: { maxBatchSize: number; batchWaitMs: number; passMs?: number; failTag?: number; incoming?: () => number }) {
  const calls: number[][] = [];
  const reports: BatchReport[] = [];
  const batcher = new EncodeBatcher(
    async (images) => {
      calls.push(images.map((i) => i.rgb[0]!));
      await new Promise((r) => setTimeout(r, options.passMs ?? 5));
      if (images.some((i) => i.rgb[0] === options.failTag)) throw new Error(`image ${options.failTag} is bad`);
      return images.map(fakeFeatures);
    },
    { maxBatchSize: options.maxBatchSize, batchWaitMs: options.batchWaitMs, onBatch: (r) => reports.push(r), ...(options.incoming ? { incoming: options.incoming } : {}) },
  );
  return { batcher, calls, reports };
}

describe('EncodeBatcher', () => {
  it('groups jobs that arrive within the wait, up to the batch size, results to the right caller', async () => {
    const { batcher, calls } = harness({ maxBatchSize: 3, batchWaitMs: 30 });
    const results = await Promise.all([1, 2, 3, 4, 5].map((t) => batcher.submit(image(t))));
    assert.deepEqual(
      results.map((f) => f.width),
      [1, 2, 3, 4, 5],
    );
    assert.deepEqual(calls, [
      [1, 2, 3],
      [4, 5],
    ]);
  });

  it('a lone job waits at most BATCH_WAIT_MS; wait 0 runs at once', async () => {
    const { batcher } = harness({ maxBatchSize: 8, batchWaitMs: 40 });
    const t0 = performance.now();
    await batcher.submit(image(1));
    const took = performance.now() - t0;
    assert.ok(took >= 35 && took < 400, `took ${took} ms`);
    const eager = harness({ maxBatchSize: 8, batchWaitMs: 0 });
    const t1 = performance.now();
    await eager.batcher.submit(image(1));
    assert.ok(performance.now() - t1 < 35);
  });

  it('jobs that arrive during a pass form the next batch', async () => {
    const { batcher, calls, reports } = harness({ maxBatchSize: 8, batchWaitMs: 0, passMs: 40 });
    const first = batcher.submit(image(1));
    await new Promise((r) => setTimeout(r, 10));
    const later = [2, 3, 4].map((t) => batcher.submit(image(t)));
    assert.equal(batcher.depth, 3);
    assert.equal(batcher.running, 1);
    await Promise.all([first, ...later]);
    assert.deepEqual(calls, [[1], [2, 3, 4]]);
    assert.deepEqual(
      reports.map((r) => r.size),
      [1, 3],
    );
    assert.equal(batcher.depth, 0);
  });

  it('one bad image fails alone; its companions are retried and succeed', async () => {
    const { batcher, calls } = harness({ maxBatchSize: 4, batchWaitMs: 20, failTag: 2 });
    const settled = await Promise.allSettled([1, 2, 3].map((t) => batcher.submit(image(t))));
    assert.deepEqual(
      settled.map((s) => s.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    assert.match(String((settled[1] as PromiseRejectedResult).reason), /image 2 is bad/);
    assert.deepEqual(calls, [[1, 2, 3], [1], [2], [3]]);
  });

  it('with nothing announced, a lone job on an idle engine runs at once, without the window', async () => {
    const { batcher, calls, reports } = harness({ maxBatchSize: 8, batchWaitMs: 10_000, incoming: () => 0 });
    const done = batcher.submit(image(1));
    // Dispatched synchronously: no timer stands between the job and the encoder.
    assert.deepEqual(calls, [[1]]);
    assert.equal(batcher.running, 1);
    await done;
    assert.ok(reports[0]!.waits[0]! < 1, `waited ${reports[0]!.waits[0]} s`);
  });

  it('a job waits for announced companions and shares their pass; a cancelled one stops the wait', async () => {
    let announced = 2;
    const { batcher, calls } = harness({ maxBatchSize: 8, batchWaitMs: 10_000, incoming: () => announced });
    announced--; // image 1 submitted, image 2 still decoding
    const first = batcher.submit(image(1));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(calls, [], 'waits for the announced image');
    announced--;
    const second = batcher.submit(image(2));
    assert.deepEqual(calls, [[1, 2]], 'the last expected image closes the batch at once');
    await Promise.all([first, second]);

    announced = 1; // image 3 submitted while image 4 decodes; then image 4's decode fails
    const third = batcher.submit(image(3));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(calls.length, 1);
    announced = 0;
    batcher.poke();
    assert.deepEqual(calls[1], [3]);
    await third;
  });
});
