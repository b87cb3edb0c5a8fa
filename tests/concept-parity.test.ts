/**
 * Concept-tracking parity: our native port of Sam3VideoModel's per-frame loop against transformers'
 * eager Sam3VideoModel + Sam3VideoProcessor (scripts/make_concept_reference.py) on the same tiny
 * random sam3_video checkpoint and frames. The reference gives transformers the pure-torch mask NMS
 * and connected components it otherwise skips (sam3tools/cv_kernels.py), so the whole algorithm is
 * compared: detection with NMS, association, new objects (some entering late), hotstart buffering
 * and removals (duplicates and unmatched), keep-alive suppression, occlusion suppression,
 * reconditioning, hole filling, the object cap, forward and backward, two concepts.
 *
 * Per frame, in the order frames come out: the object ids, their masks (COCO RLE at the video size),
 * detection scores and boxes. The checkpoint's thresholds are set so that the random detector finds
 * objects (concept_demo.py explains each); the reference's statistics show every mechanism fired.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { before, describe, it } from 'node:test';

import { type FrameResult, Sam3Model } from '../src/index.js';
import { type ConceptFixture, PngFrames, type RefFrame, conceptFixture, ourOptions, promptFrame, refBox } from './concept-fixture.js';
import { pixelDiff } from './helpers.js';

/** Our frame's objects (all, or those of `only`) against the reference's, mask pixels that differ. */
function compareFrame(f: FrameResult, want: RefFrame, prompts: string[], where: string, only?: string): number {
  const ids = want.object_ids.filter((id) => only === undefined || want.prompt_to_obj_ids[only]?.includes(id));
  assert.deepEqual(
    f.objects.map((o) => o.id),
    ids,
    `${where}: objects`,
  );
  let pixels = 0;
  for (const o of f.objects) {
    const j = want.object_ids.indexOf(o.id);
    const w = want.masks[j]!;
    assert.deepEqual(o.mask.size, w.size);
    const d = o.mask.counts === w.counts ? 0 : pixelDiff(o.mask.counts, w.counts, w.size[0], w.size[1]);
    assert.ok(d <= 2, `${where}, object ${o.id}: ${d} pixels differ`);
    pixels += d;
    assert.ok(Math.abs(o.score - want.scores[j]!) < 1e-4, `${where}, object ${o.id}: score ${o.score} vs ${want.scores[j]}`);
    assert.equal(o.concept, prompts.find((p) => want.prompt_to_obj_ids[p]?.includes(o.id)), `${where}, object ${o.id}: concept`);
    // Boxes: the reference's are inclusive pixel corners of the mask before the non-overlap rule.
    const expect = refBox(want.boxes[j]!, w.size);
    for (let k = 0; k < 4; k++) assert.ok(Math.abs(o.box[k]! - expect[k]!) < 1e-5, `${where}, object ${o.id}: box ${o.box} vs ${expect}`);
  }
  return pixels;
}

let fx: ConceptFixture;
let frames: PngFrames;

before(async () => {
  fx = await conceptFixture();
  frames = await PngFrames.load(path.join(fx.dir, 'frames'));
});

describe('concept tracking parity with transformers eager Sam3VideoModel', () => {
  it('the reference exercises every mechanism of the algorithm', () => {
    const total = (key: string) => Object.values(fx.cases).reduce((n, c) => n + Number(c.stats[key] ?? 0), 0);
    for (const key of ['nms_suppressed', 'objects_created_after_first_frame', 'hotstart_removed', 'reconditioning_events', 'occlusion_suppressions', 'hole_fill_pixels_changed']) {
      assert.ok(total(key) > 0, `${key}: ${total(key)}`);
    }
    const names = Object.keys(fx.cases);
    assert.ok(names.some((n) => fx.cases[n]!.direction === 'backward'));
    assert.ok(names.some((n) => fx.cases[n]!.settings.hotstart_delay === 0));
    assert.ok(names.some((n) => fx.cases[n]!.frames.some((f) => f.object_ids.length === 0)), 'a frame where every object is hidden or gone');
  });

  for (const name of ['forward', 'backward', 'forward_no_hotstart', 'forward_window_capped', 'forward_unmatched', 'backward_keep_alive']) {
    it(name, async () => {
      const c = fx.cases[name];
      assert.ok(c, `reference case ${name}`);
      // The case's settings as the environment would give them (the bundle records the checkpoint's).
      const model = await Sam3Model.load(fx.bundle, { warmup: false, concept: c.settings as Record<string, never> });
      const session = await model.openVideo(frames);
      try {
        for (const p of c.prompts) await session.addConcept(p);
        const got: FrameResult[] = [];
        for await (const f of session.propagate(ourOptions(c))) got.push(f);
        assert.deepEqual(
          got.map((f) => [f.frameIndex, f.objects.map((o) => o.id)]),
          c.frames.map((f) => [f.frame_index, f.object_ids]),
          'frames in output order with their objects',
        );
        let pixels = 0;
        for (const [i, f] of got.entries()) pixels += compareFrame(f, c.frames[i]!, c.prompts, `frame ${f.frameIndex}`);
        console.log(`# ${name}: ${got.length} frames, ${got.reduce((n, f) => n + f.objects.length, 0)} objects, ${pixels} mask pixels differ`);
      } finally {
        await session.dispose();
        model.dispose();
      }
    });
  }
});

describe('concept tracking through the session API (text prompts on frames, then propagation) equals transformers', () => {
  // A text prompt on frame f is add_text_prompt + Sam3VideoModel.forward on f (its result: the
  // concept's objects there); propagate forward / backward / both in our frame order (the reference
  // calls transformers' iterator accordingly); remove is session.remove_object.
  for (const name of ['ops_forward', 'ops_forward_no_hotstart', 'ops_backward', 'ops_both_window', 'ops_repeat_prompt']) {
    it(name, async () => {
      const c = fx.opCases[name];
      assert.ok(c, `reference case ${name}`);
      const model = await Sam3Model.load(fx.bundle, { warmup: false, concept: c.settings as Record<string, never> });
      const session = await model.openVideo(frames);
      let pixels = 0;
      let count = 0;
      try {
        for (const [k, op] of c.ops.entries()) {
          const where = `op ${k} (${op.op})`;
          if (op.op === 'prompt') {
            const f = await promptFrame(session, op.frame!, op.text!);
            pixels += compareFrame(f, op.outputs[0]!, c.prompts, `${where} frame ${op.frame}`, op.text);
            count += f.objects.length;
          } else if (op.op === 'propagate') {
            const got: FrameResult[] = [];
            for await (const f of session.propagate({ direction: op.direction!, startFrameIndex: op.start!, maxFrames: op.max_frames ?? null })) got.push(f);
            assert.deepEqual(
              got.map((f) => f.frameIndex),
              op.outputs.map((f) => f.frame_index),
              `${where}: frames in output order`,
            );
            for (const [i, f] of got.entries()) {
              pixels += compareFrame(f, op.outputs[i]!, c.prompts, `${where} frame ${f.frameIndex}`);
              count += f.objects.length;
            }
          } else {
            await session.removeObject(op.obj_id!);
          }
        }
        assert.ok(count > 0);
        console.log(`# ${name}: ${count} objects over ${c.ops.length} operations, ${pixels} mask pixels differ`);
      } finally {
        await session.dispose();
        model.dispose();
      }
    });
  }
});
