/** Inference runs on the engine thread: the JS event loop keeps ticking while a forward runs. */
import assert from 'node:assert/strict';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';

import { Sam3Model } from '../src/index.js';
import { fixture, syntheticImage } from './helpers.js';

describe('event loop', () => {
  let model: Sam3Model;
  before(async () => {
    model = await Sam3Model.load((await fixture()).bundle, { threads: 1 });
  });
  after(() => model?.dispose());

  it('stays responsive during a long encoder pass', async () => {
    const w = 320;
    const h = 240;
    const rgb = await syntheticImage(w, h, 9);
    // Grow the batch until ONE native call (one batched forward) takes long enough to mean something.
    let count = 32;
    for (;;) {
      const images = Array.from({ length: count }, () => ({ rgb, width: w, height: h }));
      const histogram = monitorEventLoopDelay({ resolution: 5 });
      let ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      histogram.enable();
      const t0 = performance.now();
      const features = await model.encodeImages(images);
      const elapsed = performance.now() - t0;
      histogram.disable();
      clearInterval(timer);
      for (const f of features) f.dispose();
      if (elapsed < 500 && count < 4096) {
        count *= 2;
        continue;
      }
      assert.ok(elapsed >= 500, `even ${count} images took only ${elapsed.toFixed(0)} ms`);
      const p99 = histogram.percentile(99) / 1e6;
      const max = histogram.max / 1e6;
      console.log(`# event loop: ${count} images in one forward, ${elapsed.toFixed(0)} ms; delay p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms; ${ticks} ticks of a 10 ms timer`);
      assert.ok(p99 < 60, `event-loop delay p99 ${p99.toFixed(1)} ms (max ${max.toFixed(1)} ms) over ${elapsed.toFixed(0)} ms`);
      assert.ok(ticks >= (elapsed / 10) * 0.5, `a 10 ms timer ticked ${ticks} times in ${elapsed.toFixed(0)} ms`);
      break;
    }
  });
});
